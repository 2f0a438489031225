@echo off
rem DeepFaceLab step 8_merged_to_mp4_lossless: runs dfl on the workspace next to this folder (%DFL_WORKSPACE% overrides it).
setlocal
if not defined DFL_WORKSPACE set "DFL_WORKSPACE=%~dp0..\workspace"
dfl video --lossless %*
if errorlevel 1 pause
