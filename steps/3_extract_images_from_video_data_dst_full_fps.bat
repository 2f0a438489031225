@echo off
rem DeepFaceLab step 3_extract_images_from_video_data_dst_full_fps: runs dfl on the workspace next to this folder (%DFL_WORKSPACE% overrides it).
setlocal
if not defined DFL_WORKSPACE set "DFL_WORKSPACE=%~dp0..\workspace"
dfl extract-frames dst --fps 0 %*
if errorlevel 1 pause
