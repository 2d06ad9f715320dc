"""The Windows installer, built on Linux: WiX source generation (wix), the ADMX/ADML Group Policy
template (admx) and the build command (build: payload + wixl -> dist/Lifeboat-<version>-x64.msi).

Not part of the installed app: it runs from the repository (`python -m installer.build`).
"""
