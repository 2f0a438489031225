@echo off
rem DeepFaceLab step 3_cut_video: runs dfl on the workspace next to this folder (%DFL_WORKSPACE% overrides it).
setlocal
if not defined DFL_WORKSPACE set "DFL_WORKSPACE=%~dp0..\workspace"
dfl cut-video %*
if errorlevel 1 pause
