@echo off
rem DeepFaceLab step "4.2) data_src util faceset enhance": runs dfl on the workspace next to this folder (%DFL_WORKSPACE% overrides it).
setlocal
if not defined DFL_WORKSPACE set "DFL_WORKSPACE=%~dp0..\workspace"
dfl faceset enhance src %*
if errorlevel 1 pause
