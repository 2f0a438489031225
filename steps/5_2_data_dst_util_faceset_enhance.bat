@echo off
rem DeepFaceLab step "5.2) data_dst util faceset enhance": runs dfl on the workspace next to this folder (%DFL_WORKSPACE% overrides it).
setlocal
if not defined DFL_WORKSPACE set "DFL_WORKSPACE=%~dp0..\workspace"
dfl faceset enhance dst %*
if errorlevel 1 pause
