@echo off
rem DeepFaceLab step 7_merge_AMP: runs dfl on the workspace next to this folder (%DFL_WORKSPACE% overrides it).
setlocal
if not defined DFL_WORKSPACE set "DFL_WORKSPACE=%~dp0..\workspace"
dfl merge --model AMP %*
if errorlevel 1 pause
