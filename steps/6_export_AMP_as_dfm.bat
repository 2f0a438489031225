@echo off
rem DeepFaceLab step 6_export_AMP_as_dfm: runs dfl on the workspace next to this folder (%DFL_WORKSPACE% overrides it).
setlocal
if not defined DFL_WORKSPACE set "DFL_WORKSPACE=%~dp0..\workspace"
dfl model export --model AMP %*
if errorlevel 1 pause
