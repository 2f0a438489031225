@echo off
rem DeepFaceLab step 3_optional_denoise_data_dst_images: runs dfl on the workspace next to this folder (%DFL_WORKSPACE% overrides it).
setlocal
if not defined DFL_WORKSPACE set "DFL_WORKSPACE=%~dp0..\workspace"
dfl denoise-frames dst %*
if errorlevel 1 pause
