@echo off
rem DeepFaceLab step "4) data_src faceset extract MANUAL": runs dfl on the workspace next to this folder (%DFL_WORKSPACE% overrides it).
setlocal
if not defined DFL_WORKSPACE set "DFL_WORKSPACE=%~dp0..\workspace"
dfl extract-faces src --manual %*
if errorlevel 1 pause
