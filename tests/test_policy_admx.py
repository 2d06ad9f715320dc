"""The Group Policy template: well-formed, internally consistent (every reference resolves, as the
ADMX schema and gpedit require), committed as generated, and naming exactly the registry values
the app reads and the MSI writes.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from desktop import config
from desktop.policy_registry import INSTALL_KEY, KEY, POLICIES
from installer import admx, wix

REPO = Path(__file__).resolve().parents[1]
POLICY_DIR = REPO / "installer" / "policy"
NS = {"p": admx.NS}


def _parse(rel: str) -> ET.Element:
    return ET.parse(POLICY_DIR / rel).getroot()


def test_committed_template_is_what_the_generator_renders() -> None:
    """Tried: regenerating the ADMX/ADML from the policy table; the committed files must not drift."""
    for rel, text in admx.render().items():
        assert (POLICY_DIR / rel).read_text(encoding="utf-8") == text, f"run python -m installer.admx ({rel})"


def test_admx_policies_match_the_values_the_app_reads() -> None:
    """Tried: every policy's key/valueName/type in the ADMX against the reader's table."""
    root = _parse("Lifeboat.admx")
    assert root.tag == f"{{{admx.NS}}}policyDefinitions"
    found = {}
    for pol in root.iterfind("p:policies/p:policy", NS):
        assert pol.get("key") == KEY and pol.get("class") in ("Machine", "User", "Both")
        (element,) = list(pol.iterfind("p:elements/*", NS))
        kind = {"decimal": "dword", "text": "string", "enum": "enum"}[element.tag.split("}")[1]]
        found[element.get("valueName")] = kind
        if kind == "enum":
            values = [s.text for s in element.iterfind("p:item/p:value/p:string", NS)]
            field = next(p.field for p in POLICIES if p.name == element.get("valueName"))
            assert tuple(values) == config.CHOICES[field]
    assert found == {p.name: p.kind for p in POLICIES}


def test_msi_writes_the_same_values() -> None:
    """Tried: the WiX source's registry rows under the MSI's own key against the same table (the
    same value names as Group Policy's; REG_SZ, which the reader coerces) and none under Policies."""
    wxs = ET.fromstring(wix.product_wxs("1.2.3", ["Lifeboat.exe", "lifeboat-cli.exe"]))
    values = list(wxs.iter("{http://schemas.microsoft.com/wix/2006/wi}RegistryValue"))
    rows = {r.get("Name"): (r.get("Type"), r.get("Value")) for r in values if r.get("Key") == INSTALL_KEY}
    assert rows == {
        **{p.name: ("string", f"[{p.prop}]") for p in POLICIES}, "StartAtLogin": ("string", "[STARTATLOGIN]"),
    }
    assert not [r for r in values if r.get("Key") == KEY]


def test_every_reference_resolves() -> None:
    """Tried: each $(string.X), $(presentation.X), category, supportedOn and refId the ADMX/ADML use."""
    admx_root, adml_root = _parse("Lifeboat.admx"), _parse("en-US/Lifeboat.adml")
    assert adml_root.tag == f"{{{admx.NS}}}policyDefinitionResources"
    for root in (admx_root, adml_root):
        assert root.get("revision") == "1.0" and root.get("schemaVersion") == "1.0"
    strings = {s.get("id"): s.text for s in adml_root.iterfind("p:resources/p:stringTable/p:string", NS)}
    table = "p:resources/p:presentationTable/p:presentation"
    presentations = {p.get("id"): p for p in adml_root.iterfind(table, NS)}
    categories = {c.get("name") for c in admx_root.iterfind("p:categories/p:category", NS)}
    supported = {d.get("name") for d in admx_root.iterfind("p:supportedOn/p:definitions/p:definition", NS)}
    text = ET.tostring(admx_root, encoding="unicode")
    for ref in re.findall(r"\$\(string\.([^)]+)\)", text):
        assert strings.get(ref), f"missing string {ref}"
    for ref in re.findall(r"\$\(presentation\.([^)]+)\)", text):
        assert ref in presentations, f"missing presentation {ref}"
    for el in admx_root.iter():
        if el.tag.endswith("parentCategory"):
            assert el.get("ref") in categories
    for pol in admx_root.iterfind("p:policies/p:policy", NS):
        assert pol.findtext("p:supportedOn", None, NS) is not None
        assert {s.get("ref") for s in pol.iterfind("p:supportedOn", NS)} <= supported
        ids = {e.get("id") for e in pol.iterfind("p:elements/*", NS)}
        pres = presentations[str(pol.get("presentation"))[len("$(presentation.") : -1]]
        assert {c.get("refId") for c in pres} == ids
        explain = str(strings[str(pol.get("explainText"))[len("$(string.") : -1]])
        assert len(explain) > 80 and pol.get("valueName") is None  # values live in elements


def test_admx_element_order_follows_the_schema() -> None:
    """Tried: child order of policyDefinitions and of each policy (the schema's xs:sequence)."""
    root = _parse("Lifeboat.admx")
    tags = [c.tag.split("}")[1] for c in root]
    assert tags == ["policyNamespaces", "resources", "supportedOn", "categories", "policies"]
    order = ["parentCategory", "seeAlso", "keywords", "supportedOn", "enabledValue", "disabledValue",
             "enabledList", "disabledList", "elements"]
    for pol in root.iterfind("p:policies/p:policy", NS):
        seq = [order.index(c.tag.split("}")[1]) for c in pol]
        assert seq == sorted(seq)
