@echo off
rem DeepFaceLab step "5) data_dst faceset extract + manual fix": runs dfl on the workspace next to this folder (%DFL_WORKSPACE% overrides it).
setlocal
if not defined DFL_WORKSPACE set "DFL_WORKSPACE=%~dp0..\workspace"
dfl extract-faces dst --manual-fix %*
if errorlevel 1 pause
