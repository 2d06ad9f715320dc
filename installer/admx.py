"""The Group Policy template (Lifeboat.admx + en-US/Lifeboat.adml), generated from the policy table.

`python -m installer.admx` rewrites installer/policy/; a test checks the committed files equal what
`render()` produces, so the template, the MSI and the registry reader cannot drift apart. Every
policy is class "Both" (HKLM or HKCU `SOFTWARE\\Policies\\Lifeboat`; the app lets HKLM win).
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from desktop.config import CHOICES, LIMITS, SECTIONS, Config
from desktop.policy_registry import KEY, POLICIES, PolicyValue

NS = "http://schemas.microsoft.com/GroupPolicy/2006/07/PolicyDefinitions"
OUT = Path(__file__).resolve().parent / "policy"
SUPPORTED = "SUPPORTED_Lifeboat_0_1"
CATEGORIES = {  # config section -> (category name, display name)
    "account": ("Account", "Account and Microsoft 365"),
    "backup": ("Backup", "Backup relay (sending during an outage)"),
    "sync": ("Cache", "Local cache"),
    "failover": ("Failover", "Failover"),
}
ENUM_HELP = {
    "starttls": "STARTTLS (usually port 587)",
    "tls": "Implicit TLS (usually port 465)",
    "none": "None (trusted network only)",
    "auto": "Automatic (recommended)",
    "continuity": "Continuity: send through the backup relay now",
    "normal": "Normal: never fail over automatically",
    "yes": "Yes: allowed",
    "no": "No: refused",
}


def category(policy: PolicyValue) -> str:
    section = next(s for s, names in SECTIONS.items() if policy.field in names)
    return CATEGORIES[section][0]


def default(policy: PolicyValue) -> object:
    return Config.__dataclass_fields__[policy.field].default


def _el(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, f"{{{NS}}}{tag}", attrs)
    if text is not None:
        el.text = text
    return el


def _root(tag: str) -> ET.Element:
    return ET.Element(f"{{{NS}}}{tag}", {"revision": "1.0", "schemaVersion": "1.0"})


def admx() -> ET.Element:
    root = _root("policyDefinitions")
    ns = _el(root, "policyNamespaces")
    _el(ns, "target", prefix="lifeboat", namespace="Lifeboat.Policies.Lifeboat")
    _el(root, "resources", minRequiredRevision="1.0")
    defs = _el(_el(root, "supportedOn"), "definitions")
    _el(defs, "definition", name=SUPPORTED, displayName=f"$(string.{SUPPORTED})")
    cats = _el(root, "categories")
    _el(cats, "category", name="Lifeboat", displayName="$(string.Cat_Lifeboat)")
    for name, _label in CATEGORIES.values():
        cat = _el(cats, "category", name=name, displayName=f"$(string.Cat_{name})")
        _el(cat, "parentCategory", ref="Lifeboat")
    policies = _el(root, "policies")
    for p in POLICIES:
        attrs = {"name": p.name, "class": "Both", "displayName": f"$(string.{p.name})",
                 "explainText": f"$(string.{p.name}_Explain)", "presentation": f"$(presentation.{p.name})",
                 "key": KEY}
        pol = _el(policies, "policy", **attrs)
        _el(pol, "parentCategory", ref=category(p))
        _el(pol, "supportedOn", ref=SUPPORTED)
        elements = _el(pol, "elements")
        if p.kind == "dword":
            low, high = LIMITS[p.field]
            _el(elements, "decimal", id=p.name, valueName=p.name, required="true",
                minValue=str(int(low)), maxValue=str(int(high)))
        elif p.kind == "enum":
            enum = _el(elements, "enum", id=p.name, valueName=p.name, required="true")
            for choice in CHOICES[p.field]:
                item = _el(enum, "item", displayName=f"$(string.{p.name}_{choice})")
                _el(_el(item, "value"), "string", choice)
        else:
            _el(elements, "text", id=p.name, valueName=p.name, required="true", maxLength="1024")
    return root


def adml() -> ET.Element:
    root = _root("policyDefinitionResources")
    _el(root, "displayName", "Lifeboat")
    _el(root, "description", "Group Policy settings for Lifeboat, email continuity for Microsoft 365.")
    resources = _el(root, "resources")
    strings = _el(resources, "stringTable")
    _el(strings, "string", "Lifeboat 0.1 or later", id=SUPPORTED)
    _el(strings, "string", "Lifeboat", id="Cat_Lifeboat")
    for name, label in CATEGORIES.values():
        _el(strings, "string", label, id=f"Cat_{name}")
    presentations = _el(resources, "presentationTable")
    for p in POLICIES:
        _el(strings, "string", p.title, id=p.name)
        explain = (f"{p.explain}\n\nRegistry: {KEY}\\{p.name} "
                   f"({'REG_DWORD' if p.kind == 'dword' else 'REG_SZ'}). MSI property: {p.prop}. "
                   "Disabled or not configured: the user's own setting applies, else the default.")
        _el(strings, "string", explain, id=f"{p.name}_Explain")
        pres = _el(presentations, "presentation", id=p.name)
        label = f"{p.title}:"
        if p.kind == "dword":
            _el(pres, "decimalTextBox", label, refId=p.name, defaultValue=str(int(default(p))))  # type: ignore[call-overload]
        elif p.kind == "enum":
            _el(pres, "dropdownList", label, refId=p.name, noSort="true", defaultItem="0")
            for choice in CHOICES[p.field]:
                _el(strings, "string", ENUM_HELP.get(choice, choice), id=f"{p.name}_{choice}")
        else:
            box = _el(pres, "textBox", refId=p.name)
            _el(box, "label", label)
            if default(p):
                _el(box, "defaultValue", str(default(p)))
    return root


def _text(root: ET.Element) -> str:
    ET.register_namespace("", NS)
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def render() -> dict[str, str]:
    """Relative path under installer/policy -> file text."""
    return {"Lifeboat.admx": _text(admx()), "en-US/Lifeboat.adml": _text(adml())}


def main() -> int:
    for rel, text in render().items():
        path = OUT / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
