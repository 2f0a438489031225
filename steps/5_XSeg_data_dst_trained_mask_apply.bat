@echo off
rem DeepFaceLab step "5.XSeg) data_dst trained mask - apply": runs dfl on the workspace next to this folder (%DFL_WORKSPACE% overrides it).
setlocal
if not defined DFL_WORKSPACE set "DFL_WORKSPACE=%~dp0..\workspace"
dfl xseg apply dst %*
if errorlevel 1 pause
