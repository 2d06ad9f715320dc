"""WiX source for the Lifeboat MSI, generated from the payload's file list and the policy table.

The MSI writes the properties it is given under the product's own key, HKLM\\SOFTWARE\\Lifeboat\\Install
(REG_SZ, named like the policy values), never under SOFTWARE\\Policies (Group Policy owns that key).
The app reads them as machine settings below Group Policy (desktop/policy_registry.py). An upgrade
reads them back (AppSearch/RegLocator), so a property given at first install survives an upgrade that
does not repeat it; one given again on the upgrade's command line wins (saved before AppSearch,
restored after it: `remembered_properties()`).

`product_wxs(version, files)` is pure: same inputs, same XML. Ids and file component GUIDs derive
from paths (uuid5); registry components (policy, Run key, shortcut) get a GUID per version, so a
major upgrade (old product removed first) never leaves another product's claim on them. The
UpgradeCode never changes. wixl cannot put conditions on components: `component_conditions()`.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from xml.sax.saxutils import escape, quoteattr

from desktop.policy_registry import INSTALL_KEY, POLICIES

UPGRADE_CODE = "6F0B5C2E-3D4A-4E57-9B1C-2A8D7E4F1B63"
NAMESPACE = uuid.UUID(UPGRADE_CODE)
MANUFACTURER = "Lifeboat"
RUN_KEY = r"SOFTWARE\Microsoft\Windows\CurrentVersion\Run"
APP_KEY = r"SOFTWARE\Lifeboat"
# The app (tray, window, workers): Lifeboat.exe (installer.launcher, GUI subsystem) running
# `lifeboat run`; at sign-in (the Run key) it starts in the tray only (`run --minimized`).
GUI_EXE = "Lifeboat.exe"
GUI_TARGET = rf"[INSTALLDIR]{GUI_EXE}"
GUI_ARGUMENTS = "run"
LOGIN_COMMAND = f'"{GUI_TARGET}" {GUI_ARGUMENTS} --minimized'
# The Application-log event source desktop/eventlog.py writes as (source name "Lifeboat"); its messages
# come from Lifeboat.exe's message table (installer/launcher.py: every event ID -> "%1").
EVENT_SOURCE_KEY = r"SYSTEM\CurrentControlSet\Services\EventLog\Application\Lifeboat"
EVENT_MESSAGE_FILE = rf"[INSTALLDIR]{GUI_EXE}"
EVENT_TYPES_SUPPORTED = 7  # error, warning, information
PURGE_CONDITION = 'REMOVE="ALL" AND REMOVEUSERDATA="1" AND NOT UPGRADINGPRODUCTCODE'
PURGE_SEQUENCE = 3450  # deferred, between InstallInitialize (1500) and RemoveFiles (3500)


def _id(prefix: str, text: str) -> str:
    return prefix + hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:24].upper()


def _guid(text: str) -> str:
    return str(uuid.uuid5(NAMESPACE, text)).upper()


def policy_component(prop: str) -> str:
    return f"Policy_{prop}"


def component_conditions() -> dict[str, str]:
    """Component id -> condition: a policy value is written only when its property is set.
    `OR REMOVE="ALL"`: wine's msi skips removing a component whose condition is false at uninstall
    (Windows ignores conditions then), which would leave the values behind."""
    out = {policy_component(p.prop): f'{p.prop} OR REMOVE="ALL"' for p in POLICIES}
    out["RunAtLogin"] = 'STARTATLOGIN="1" OR REMOVE="ALL"'
    return out


# The Start-menu shortcut carries the app's AppUserModelID (the same as desktop.window.APP_ID, which the
# app sets on its own process): Windows attributes the tray's notifications to that shortcut, so they
# show as Lifeboat's, and it does not drop notifications of an ID no shortcut carries.
APP_USER_MODEL_ID = "Lifeboat.Desktop"
PKEY_APP_USER_MODEL_ID = "{9F4C2855-9F79-4B39-A8D0-E1D42DE1D5F3} 5"  # System.AppUserModel.ID


def shortcut_property_idt() -> str:
    """The MsiShortcutProperty table (Windows Installer 5.0) as an .idt file for msibuild: wixl cannot
    write it. One row: the Start-menu shortcut's System.AppUserModel.ID."""
    rows = [["MsiShortcutProperty", "Shortcut_", "PropertyKey", "PropVariantValue"],
            ["s72", "s72", "s0", "s0"],
            ["MsiShortcutProperty", "MsiShortcutProperty"],
            ["AppUserModelId", "LifeboatShortcut", PKEY_APP_USER_MODEL_ID, APP_USER_MODEL_ID]]
    return "".join("\t".join(r) + "\r\n" for r in rows)


def event_source_registry(rows: list[list[str]]) -> list[list[str]]:
    """Registry table rows (Registry, Root, Key, Name, Value, Component_) as wixl wrote them -> as the
    MSI needs them: EventMessageFile as REG_EXPAND_SZ ("#%", which wixl drops), and a "-" row that
    deletes the source's key when the component is removed (wixl has no RegistryKey Action)."""
    out = []
    for row in rows:
        ours = row[2].rstrip("\\") == EVENT_SOURCE_KEY and row[3] == "EventMessageFile"
        if ours and not row[4].startswith("#"):
            row = [*row[:4], "#%" + row[4], *row[5:]]
        out.append(row)
    out.append(["EventSourceKey", "2", EVENT_SOURCE_KEY, "-", "", "EventSource"])
    return out


def secure_properties() -> list[str]:
    """Public properties that must reach the server side of a managed (elevated) install."""
    return [p.prop for p in POLICIES] + ["STARTATLOGIN", "REMOVEUSERDATA"]


def remembered_properties() -> dict[str, str]:
    """Property -> its value name under INSTALL_KEY: read back at the start of every install."""
    return {**{p.prop: p.name for p in POLICIES}, "STARTATLOGIN": "StartAtLogin"}


# AppSearch runs at 50 in both sequences: a command-line value is saved before it and restored after it.
SAVE_SEQUENCE, RESTORE_SEQUENCE, DEFAULT_SEQUENCE = 40, 51, 52


def _remember_xml() -> tuple[list[str], list[str], list[str]]:
    """(Property elements with their RegistrySearch, CustomAction elements, sequence rows)."""
    props, actions, rows = [], [], []
    for prop, name in remembered_properties().items():
        props.append(f'    <Property Id="{prop}"><RegistrySearch Id="Remembered_{prop}" Root="HKLM" '
                     f'Key="{INSTALL_KEY}" Name="{name}" Type="raw" Win64="yes"/></Property>')
        saved = f"CMDLINE_{prop}"
        actions.append(f'    <CustomAction Id="SaveCmd_{prop}" Property="{saved}" Value="[{prop}]"/>')
        actions.append(f'    <CustomAction Id="RestoreCmd_{prop}" Property="{prop}" Value="[{saved}]"/>')
        rows.append(f'      <Custom Action="SaveCmd_{prop}" Sequence="{SAVE_SEQUENCE}">{prop}</Custom>')
        rows.append(f'     <Custom Action="RestoreCmd_{prop}" Sequence="{RESTORE_SEQUENCE}">{saved}</Custom>')
    # STARTATLOGIN's default, set only when neither the command line nor an earlier install gave it
    actions.append('    <CustomAction Id="DefaultStartAtLogin" Property="STARTATLOGIN" Value="1"/>')
    rows.append(f'      <Custom Action="DefaultStartAtLogin" Sequence="{DEFAULT_SEQUENCE}">'
                'NOT STARTATLOGIN</Custom>')
    return props, actions, rows


def _tree(files: Iterable[str]) -> dict[str, dict]:
    root: dict[str, dict] = {}
    for rel in sorted(files):
        node = root
        *dirs, _name = rel.split("/")
        for d in dirs:
            node = node.setdefault(d, {})
    return root


def _directories(node: dict[str, dict], prefix: str, files_by_dir: dict[str, list[str]], out: list[str],
                 indent: str) -> None:
    for rel in files_by_dir.get(prefix, []):
        name = rel.rsplit("/", 1)[-1]
        out.append(
            f'{indent}<Component Id="{_id("C", rel)}" Guid="{_guid("file:" + rel)}" Win64="yes">'
            f'<File Id="{_id("F", rel)}" Name={quoteattr(name)} Source={quoteattr("payload/" + rel)} '
            f'KeyPath="yes"/></Component>'
        )
    for name, child in sorted(node.items()):
        path = f"{prefix}/{name}" if prefix else name
        out.append(f'{indent}<Directory Id="{_id("D", path)}" Name={quoteattr(name)}>')
        _directories(child, path, files_by_dir, out, indent + "  ")
        out.append(f"{indent}</Directory>")


def file_id(rel: str) -> str:
    return _id("F", rel)


def product_wxs(version: str, files: Iterable[str]) -> str:
    """The whole WiX source. `files` are payload paths relative to INSTALLDIR, with '/'."""
    files = sorted(files)
    files_by_dir: dict[str, list[str]] = {}
    for rel in files:
        files_by_dir.setdefault(rel.rsplit("/", 1)[0] if "/" in rel else "", []).append(rel)
    tree: list[str] = []
    _directories(_tree(files), "", files_by_dir, tree, "          ")
    policy_rows = []
    for p in POLICIES:
        guid = _guid(f"install-setting:{p.name}:{version}")
        policy_rows.append(
            f'          <Component Id="{policy_component(p.prop)}" Guid="{guid}"'
            f' Win64="yes"><RegistryValue Root="HKLM" Key="{INSTALL_KEY}" Name="{p.name}" Type="string" '
            f'Value="[{p.prop}]" KeyPath="yes"/></Component>'
        )
    remember_props, remember_actions, remember_rows = _remember_xml()
    sequence_rows = "\n".join(remember_rows)
    refs = [_id("C", rel) for rel in files] + [policy_component(p.prop) for p in POLICIES]
    refs += ["RunAtLogin", "StartAtLoginSetting", "EventSource", "StartMenu"]
    launcher_exe = file_id(GUI_EXE)
    return f"""<?xml version="1.0" encoding="utf-8"?>
<Wix xmlns="http://schemas.microsoft.com/wix/2006/wi">
  <Product Id="*" Name="Lifeboat" Language="1033" Version="{version}" Manufacturer="{MANUFACTURER}"
           UpgradeCode="{UPGRADE_CODE}">
    <Package InstallerVersion="500" Compressed="yes" InstallScope="perMachine"
             Description="Lifeboat {version}: email continuity for Microsoft 365 and Exchange"
             Comments="Silent install: msiexec /i Lifeboat-{version}-x64.msi /qn TENANTID=... CLIENTID=..."/>
    <Media Id="1" Cabinet="lifeboat.cab" EmbedCab="yes"/>
    <MajorUpgrade DowngradeErrorMessage="A newer version of Lifeboat is already installed."/>
{chr(10).join(remember_props)}
    <Property Id="ARPNOMODIFY" Value="1"/>
    <Directory Id="TARGETDIR" Name="SourceDir">
      <Directory Id="ProgramFiles64Folder">
        <Directory Id="INSTALLDIR" Name="Lifeboat">
{chr(10).join(tree)}
{chr(10).join(policy_rows)}
          <Component Id="RunAtLogin" Guid="{_guid(f"run-at-login:{version}")}" Win64="yes">
            <RegistryValue Root="HKLM" Key="{RUN_KEY}" Name="Lifeboat" Type="string"
                           Value={quoteattr(LOGIN_COMMAND)} KeyPath="yes"/>
          </Component>
          <Component Id="EventSource" Guid="{_guid(f"event-source:{version}")}" Win64="yes">
            <RegistryValue Root="HKLM" Key="{EVENT_SOURCE_KEY}" Name="EventMessageFile" Type="expandable"
                           Value="{EVENT_MESSAGE_FILE}" KeyPath="yes"/>
            <RegistryValue Root="HKLM" Key="{EVENT_SOURCE_KEY}" Name="TypesSupported" Type="integer"
                           Value="{EVENT_TYPES_SUPPORTED}"/>
          </Component>
          <Component Id="StartAtLoginSetting" Guid="{_guid(f"start-at-login-setting:{version}")}" Win64="yes">
            <RegistryValue Root="HKLM" Key="{INSTALL_KEY}" Name="StartAtLogin" Type="string"
                           Value="[STARTATLOGIN]" KeyPath="yes"/>
          </Component>
        </Directory>
      </Directory>
      <Directory Id="ProgramMenuFolder">
        <Component Id="StartMenu" Guid="{_guid(f"start-menu:{version}")}" Win64="yes">
          <Shortcut Id="LifeboatShortcut" Name="Lifeboat" Description="Email continuity"
                    Target="{GUI_TARGET}" Arguments={quoteattr(GUI_ARGUMENTS)}
                    WorkingDirectory="INSTALLDIR"/>
          <RegistryValue Root="HKLM" Key="{APP_KEY}" Name="InstallDir" Type="string" Value="[INSTALLDIR]"
                         KeyPath="yes"/>
          <RegistryValue Root="HKLM" Key="{APP_KEY}" Name="Version" Type="string" Value="{version}"/>
        </Component>
      </Directory>
    </Directory>
    <CustomAction Id="PurgeUserData" FileKey="{launcher_exe}" Execute="deferred" Impersonate="no"
                  Return="ignore" ExeCommand="--msi-purge-user-data"/>
{chr(10).join(remember_actions)}
    <InstallUISequence>
{sequence_rows}
    </InstallUISequence>
    <InstallExecuteSequence>
{sequence_rows}
      <Custom Action="PurgeUserData" Sequence="{PURGE_SEQUENCE}">{escape(PURGE_CONDITION)}</Custom>
    </InstallExecuteSequence>
    <Feature Id="Lifeboat" Title="Lifeboat" Level="1">
{chr(10).join(f'      <ComponentRef Id="{r}"/>' for r in refs)}
    </Feature>
  </Product>
</Wix>
"""
