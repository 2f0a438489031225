@echo off
rem DeepFaceLab step 5_data_dst_faceset_extract: runs dfl on the workspace next to this folder (%DFL_WORKSPACE% overrides it).
setlocal
if not defined DFL_WORKSPACE set "DFL_WORKSPACE=%~dp0..\workspace"
dfl extract-faces dst %*
if errorlevel 1 pause
