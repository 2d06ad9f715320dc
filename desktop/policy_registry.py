"""Machine policy in the Windows registry: the one table of policy values, and its reader.

`POLICIES` maps each MSI public property to its value name under HKLM/HKCU `SOFTWARE\\Policies\\Lifeboat`
(Group Policy's) and under HKLM `SOFTWARE\\Lifeboat\\Install` (the MSI's: the properties given at install,
REG_SZ), and to the `Config` field it sets; the MSI builder, the ADMX template and the reader all use it.
Ranges and choices are desktop.config's (LIMITS, CHOICES: the one schema), which reads this table.
`read()` (Windows only) returns {config_field: raw value}: Group Policy's HKLM beats its HKCU, which beats
the MSI's values; empty values mean "not set". `where(field)` names the key the value was read from.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

KEY = r"SOFTWARE\Policies\Lifeboat"
# The MSI's own key (installer/wix.py): never under Policies, which Group Policy owns and may empty.
INSTALL_KEY = r"SOFTWARE\Lifeboat\Install"


@dataclass(frozen=True)
class PolicyValue:
    prop: str  # MSI public property (TENANTID)
    name: str  # registry value name (TenantId)
    field: str  # desktop.config.Config field (tenant)
    kind: str  # "string" (REG_SZ), "dword" (REG_DWORD) or "enum" (REG_SZ, one of config.CHOICES)
    title: str  # the Group Policy setting's name
    explain: str  # what an admin reads in the Group Policy editor


POLICIES: tuple[PolicyValue, ...] = (
    PolicyValue(
        "TENANTID", "TenantId", "tenant", "string", "Microsoft 365 tenant",
        "The organisation's Microsoft Entra tenant: its ID (a GUID) or a verified domain such as "
        "contoso.com. Lifeboat signs users in against this tenant only. Not configured: 'common' "
        "(any work account).",
    ),
    PolicyValue(
        "CLIENTID", "ClientId", "client_id", "string", "Application (client) ID",
        "The Application (client) ID of the app registration Lifeboat signs in with, from the "
        "Microsoft Entra admin center (App registrations > Lifeboat > Overview). The registration "
        "needs the delegated Microsoft Graph permissions Mail.ReadWrite, Mail.Send and User.Read, the "
        "redirect URIs http://localhost and ms-appx-web://Microsoft.AAD.BrokerPlugin/<client id>, and "
        "admin consent: installer/tenant/register-app.ps1 sets it all up (see the operations guide).",
    ),
    PolicyValue(
        "AUTHORITYURL", "AuthorityUrl", "authority_url", "string", "Sign-in authority URL",
        "The sign-in authority. {tenant} is replaced by the tenant above. Change it only for "
        "national clouds (for example https://login.microsoftonline.us/{tenant}) or AD FS. "
        "Not configured: https://login.microsoftonline.com/{tenant}.",
    ),
    PolicyValue(
        "GRAPHURL", "GraphUrl", "graph_url", "string", "Microsoft Graph URL",
        "The Microsoft Graph endpoint used to sync and send mail. Change it only for national clouds. "
        "Not configured: https://graph.microsoft.com/v1.0.",
    ),
    PolicyValue(
        "EWSURL", "EwsUrl", "ews_url", "string", "Exchange Web Services URL (on-premises)",
        "For mailboxes on an on-premises Exchange Server: its EWS URL, for example "
        "https://mail.contoso.com/EWS/Exchange.asmx. This version of Lifeboat records it but does not "
        "use it yet (it syncs through Microsoft Graph only). Leave it not configured for Microsoft 365 "
        "mailboxes.",
    ),
    PolicyValue(
        "CAFILE", "CaFile", "ca_file", "string", "Extra trusted root certificate (TLS inspection)",
        "The full path of a PEM file with a root certificate Lifeboat trusts in addition to the "
        "Windows certificate store, for Microsoft Graph, sign-in and the reference URL. Lifeboat "
        "already trusts the Windows store, so a TLS inspection root deployed there by Group Policy or "
        "Intune needs nothing here. Not configured: the Windows certificate store only.",
    ),
    PolicyValue(
        "PROXY", "Proxy", "proxy", "string", "HTTP proxy",
        "The proxy for Microsoft Graph, sign-in and the reference URL, as http://host:port. It wins "
        "over every other proxy setting. Not configured: the PAC file below, else the automatic "
        "configuration script (PAC URL) of the user's Internet Options, else their static proxy "
        "(ProxyServer, with its bypass list) or HTTPS_PROXY; netsh winhttp settings are not read. "
        "Automatic proxy detection (WPAD) is never used. A proxy that "
        "asks for NTLM, Kerberos or Negotiate authentication (407) is shown to the user as "
        "'proxy authentication required', never as an outage. The backup relay is always reached "
        "directly (SMTP).",
    ),
    PolicyValue(
        "PROXYPACURL", "ProxyPacUrl", "proxy_pac_url", "string", "Proxy auto-configuration (PAC) file",
        "The http:// or https:// URL of a PAC file that picks the proxy for each Microsoft 365 host, "
        "for example http://pac.contoso.com/proxy.pac. Used when the HTTP proxy policy is not "
        "configured; it wins over the user's Internet Options. The file is fetched directly (not "
        "through a proxy) with the same certificate trust, at first use and every 30 minutes; "
        "'PROXY a; PROXY b; DIRECT' fails over in order; SOCKS entries are not used. If the file "
        "cannot be fetched or run, Lifeboat goes the way Windows does (the static proxy, else "
        "direct), says why in `lifeboat doctor` and tries again every minute. Prefer https://: "
        "whoever can change the file can route Lifeboat's traffic (TLS to Microsoft stays verified). "
        "Automatic detection (WPAD) is never used. Not configured: the automatic configuration "
        "script of the user's Internet Options, if any.",
    ),
    PolicyValue(
        "ALLOWDEVICECODE", "AllowDeviceCode", "allow_device_code", "enum",
        "Allow sign-in with a code on another device",
        "yes: users may sign in with a device code (`lifeboat login --device-code`: a code typed on "
        "another device), which needs 'Allow public client flows' in the app registration. no: device "
        "code sign-in is refused with a message; users sign in on the computer itself (the Windows "
        "account through WAM, or the system browser). Choose no when Conditional Access blocks device "
        "code flow or to keep users from approving codes sent to them by someone else. Not configured: yes.",
    ),
    PolicyValue(
        "BACKUPSMTPHOST", "BackupSmtpHost", "backup_smtp_host", "string", "Backup SMTP relay host",
        "The host name of the SMTP relay that sends mail while Microsoft 365 is unreachable. It must "
        "not depend on Microsoft 365 and must be allowed to send for your domain: publish it in SPF "
        "and sign its mail with DKIM (see docs/operations.md), or recipients may reject outage mail. "
        "Not configured: no backup route (users can read their cache, but cannot send during an outage).",
    ),
    PolicyValue(
        "BACKUPSMTPPORT", "BackupSmtpPort", "backup_smtp_port", "dword", "Backup SMTP relay port",
        "The TCP port of the backup relay: usually 587 (submission with STARTTLS) or 465 (implicit "
        "TLS). Not configured: 587.",
    ),
    PolicyValue(
        "BACKUPSMTPSECURITY", "BackupSmtpSecurity", "backup_smtp_security", "enum",
        "Backup SMTP relay security",
        "How the connection to the backup relay is protected: starttls (port 587), tls (implicit TLS, "
        "port 465) or none (only for a relay on a trusted network; passwords and mail then travel in "
        "clear text). The relay's certificate is always verified. Not configured: starttls.",
    ),
    PolicyValue(
        "BACKUPSENDER", "BackupSender", "backup_sender", "string", "Backup route envelope sender",
        "The envelope sender (MAIL FROM) used on the backup relay, for example "
        "outage-relay@contoso.com, when the relay only accepts a fixed sender. The visible From: "
        "stays the user's address. Not configured: the user's own address.",
    ),
    PolicyValue(
        "CACHEDAYS", "CacheDays", "cache_days", "dword", "Days of mail kept on the machine",
        "How many days of recent mail Lifeboat keeps in its encrypted cache for reading during an "
        "outage. Larger values use more disk and take longer to sync the first time. Not configured: 30.",
    ),
    PolicyValue(
        "CACHEMAXMB", "CacheMaxMB", "cache_max_mb", "dword", "Maximum cache size (MB)",
        "The most disk space, in megabytes, the encrypted cache may use per user; the oldest mail is "
        "dropped first. Not configured: 2048.",
    ),
    PolicyValue(
        "FAILOVERAFTER", "FailoverAfterSeconds", "failover_after_seconds", "dword",
        "Seconds of failure before continuity mode",
        "How long, in seconds, Microsoft 365 must keep failing (while the reference URL still answers) "
        "before Lifeboat enters continuity mode and sends through the backup relay. Lower values fail "
        "over faster but may react to short glitches. Not configured: 30.",
    ),
    PolicyValue(
        "RECOVERAFTER", "RecoverAfterSeconds", "recover_after_seconds", "dword",
        "Seconds of success before leaving continuity mode",
        "How long, in seconds, Microsoft 365 must answer again before Lifeboat leaves continuity mode "
        "and copies outage-sent mail into Sent Items. Not configured: 30.",
    ),
    PolicyValue(
        "REFERENCEURL", "ReferenceUrl", "reference_url", "string", "Reference URL (network check)",
        "An HTTPS URL that does not depend on Microsoft 365, for example your intranet or a public "
        "site. Lifeboat fails over only when Microsoft 365 fails while this URL answers, so a laptop "
        "that is simply offline does not switch to the backup relay.",
    ),
    PolicyValue(
        "FORCEMODE", "ForceMode", "force_mode", "enum", "Force a mode",
        "auto: Lifeboat decides from its probes (recommended). continuity: every user is put in "
        "continuity mode now and sends through the backup relay (use during a declared outage). "
        "normal: continuity is never entered automatically. Not configured: auto.",
    ),
)

BY_NAME = {p.name.lower(): p for p in POLICIES}
BY_FIELD = {p.field: p for p in POLICIES}


# field -> the registry place its value came from in the last read() (for where())
_ORIGIN: dict[str, str] = {}


def where(field: str) -> str:
    """Where a field's machine value lives, for error messages: the key it was last read from."""
    if field in _ORIGIN:
        return _ORIGIN[field]
    return rf"policy HKLM\{KEY}\{BY_FIELD[field].name}" if field in BY_FIELD else f"policy {KEY}"


def merge(hklm: Mapping[str, Any], hkcu: Mapping[str, Any],
          install: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """{config_field: raw value} from the hives' values (names are case-insensitive, as in the
    registry). Policies HKLM beats Policies HKCU beats the MSI's INSTALL_KEY; empty strings and
    unknown names are ignored."""
    return {field: value for field, (value, _origin) in _merge_with_origin(hklm, hkcu, install or {}).items()}


def _merge_with_origin(hklm: Mapping[str, Any], hkcu: Mapping[str, Any],
                       install: Mapping[str, Any]) -> dict[str, tuple[Any, str]]:
    out: dict[str, tuple[Any, str]] = {}
    layers = ((install, f"HKLM\\{INSTALL_KEY}", "installed setting"), (hkcu, f"HKCU\\{KEY}", "policy"),
              (hklm, f"HKLM\\{KEY}", "policy"))
    for values, key, label in layers:
        for name, value in values.items():
            policy = BY_NAME.get(name.lower())
            if policy is None or value is None or (isinstance(value, str) and not value.strip()):
                continue
            out[policy.field] = (value.strip() if isinstance(value, str) else value,
                                 f"{label} {key}\\{policy.name}")
    return out


def _values(hive: int, path: str = KEY) -> dict[str, Any]:
    if sys.platform != "win32":  # also tells mypy on other platforms to skip what follows
        return {}
    import winreg

    try:
        key = winreg.OpenKey(hive, path, 0, winreg.KEY_READ | winreg.KEY_WOW64_64KEY)
    except FileNotFoundError:
        return {}
    out: dict[str, Any] = {}
    with key:
        for i in itertools.count():
            try:
                name, value, _kind = winreg.EnumValue(key, i)
            except OSError:
                break
            out[name] = value
    return out


def read() -> dict[str, Any]:
    """The machine's Lifeboat settings from the registry (Windows only): Group Policy's, then the MSI's."""
    if sys.platform != "win32":
        raise OSError("the registry policy reader runs on Windows only; elsewhere use the policy TOML file")
    import winreg

    merged = _merge_with_origin(_values(winreg.HKEY_LOCAL_MACHINE), _values(winreg.HKEY_CURRENT_USER),
                                _values(winreg.HKEY_LOCAL_MACHINE, INSTALL_KEY))
    _ORIGIN.clear()
    _ORIGIN.update({field: origin for field, (_value, origin) in merged.items()})
    return {field: value for field, (value, _origin) in merged.items()}
