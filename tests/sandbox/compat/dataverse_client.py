"""Microsoft's Python Dataverse client (PyPI `PowerPlatform-Dataverse-Client`), unmodified, against the sandbox.

Run by tests/sandbox/tests/compat.rs with the sandbox served over HTTPS. Environment: SALES_URL, AUTHORITY_HOST
(host:port of the token endpoint), TENANT_ID, CLIENT_ID, CLIENT_SECRET, and REQUESTS_CA_BUNDLE naming the
sandbox's CA certificate (requests, MSAL and azure-identity all honour it).

Authentication is the client's own path: azure-identity's ClientSecretCredential with the sandbox as authority
(MSAL reads the authority's OpenID configuration, then asks its token endpoint with client credentials).

Prints one line per operation: `COMPAT {"client": ..., "op": ..., "ok": true|false, "detail": ...}`.
"""

import json
import os
import sys
import traceback
import uuid

from azure.identity import ClientSecretCredential
from PowerPlatform.Dataverse.client import DataverseClient
from PowerPlatform.Dataverse.models.upsert import UpsertItem

CLIENT = "python powerplatform-dataverse-client"


def report(op, ok, detail=""):
    print("COMPAT " + json.dumps({"client": CLIENT, "op": op, "ok": bool(ok), "detail": str(detail)[:300]}), flush=True)


def run(op, fn):
    try:
        ok, detail = fn()
    except Exception as e:  # the table shows what failed and why
        ok, detail = False, f"{type(e).__name__}: {e}"
        traceback.print_exc(file=sys.stderr)
    report(op, ok, detail)
    return ok


def main():
    tag = uuid.uuid4().hex[:8]
    cred = ClientSecretCredential(
        tenant_id=os.environ["TENANT_ID"],
        client_id=os.environ["CLIENT_ID"],
        client_secret=os.environ["CLIENT_SECRET"],
        authority=os.environ["AUTHORITY_HOST"],
        # No login.microsoftonline.com to ask for instance metadata: the sandbox is the authority.
        disable_instance_discovery=True,
    )
    client = DataverseClient(os.environ["SALES_URL"], cred)
    state = {}

    def create():
        # "Customer" is a label: the client resolves it through the table's picklist definitions.
        rid = client.records.create(
            "account", {"name": f"Compat {tag}", "accountnumber": f"PY-{tag}", "customertypecode": "Customer"}
        )
        state["id"] = rid
        return bool(rid), rid

    def retrieve():
        rec = client.records.retrieve("account", state["id"], select=["name", "accountnumber", "customertypecode"])
        ok = rec["name"] == f"Compat {tag}" and rec["customertypecode"] == 3
        return ok, f"name={rec['name']!r} customertypecode={rec['customertypecode']}"

    def update():
        client.records.update("account", state["id"], {"telephone1": "555-0100"})
        rec = client.records.retrieve("account", state["id"], select=["telephone1"])
        return rec["telephone1"] == "555-0100", rec["telephone1"]

    def list_paging():
        pages = [list(p) for p in client.records.list_pages("account", select=["name"], page_size=3)]
        rows = sum(len(p) for p in pages)
        ids = {r["accountid"] for p in pages for r in p}
        return len(pages) > 1 and len(ids) == rows, f"{rows} rows in {len(pages)} pages of at most 3"

    def filter_apostrophe():
        name = f"O'Brien {tag}"
        client.records.create("account", {"name": name})
        esc = name.replace("'", "''")
        rows = list(client.records.list("account", select=["name"], filter=f"name eq '{esc}'"))
        return len(rows) == 1 and rows[0]["name"] == name, f"{len(rows)} row(s) for name eq '{esc}'"

    def upsert():
        key = {"msdynce_contactnumber": f"CON-PY-{tag}"}
        client.records.upsert("contact", [UpsertItem(alternate_key=key, record={"lastname": "Created"})])
        client.records.upsert("contact", [UpsertItem(alternate_key=key, record={"lastname": "Updated"})])
        rows = list(client.records.list("contact", select=["lastname"], filter=f"msdynce_contactnumber eq 'CON-PY-{tag}'"))
        return len(rows) == 1 and rows[0]["lastname"] == "Updated", f"{len(rows)} row(s), lastname={rows[0]['lastname'] if rows else None}"

    def create_multiple():
        ids = client.records.create("account", [{"name": f"Bulk {tag} {i}"} for i in range(3)])
        state["bulk"] = ids
        return len(ids) == 3 and len(set(ids)) == 3, f"{len(ids)} ids"

    def update_multiple():
        client.records.update("account", state["bulk"], {"telephone1": "555-0199"})
        phones = [client.records.retrieve("account", i, select=["telephone1"])["telephone1"] for i in state["bulk"]]
        return phones == ["555-0199"] * 3, phones

    def upsert_multiple():
        items = [
            UpsertItem(alternate_key={"msdynce_contactnumber": f"CON-PYM-{tag}-{i}"}, record={"lastname": f"Bulk {i}"})
            for i in range(2)
        ]
        client.records.upsert("contact", items)
        client.records.upsert("contact", items)  # second time: updates, no duplicates
        rows = list(
            client.records.list("contact", select=["lastname"], filter=f"startswith(msdynce_contactnumber,'CON-PYM-{tag}')")
        )
        return len(rows) == 2, f"{len(rows)} rows"

    def batch_changeset():
        batch = client.batch.new()
        with batch.changeset() as cs:
            cs.records.create("account", {"name": f"Batch {tag} A"})
            cs.records.create("account", {"name": f"Batch {tag} B"})
            cs.records.update("account", state["id"], {"telephone2": "555-0111"})
        res = batch.execute()
        codes = [r.status_code for r in res.responses]
        rows = list(client.records.list("account", select=["name"], filter=f"startswith(name,'Batch {tag}')"))
        return (not res.has_errors) and len(rows) == 2, f"statuses {codes}, {len(rows)} rows created"

    def delete():
        client.records.delete("account", state["id"])
        gone = client.records.retrieve("account", state["id"]) is None  # None = the service answered 404
        return gone, "gone (404)" if gone else "still there"

    def metadata():
        info = client.tables.get("account")
        keys = client.tables.get_alternate_keys("contact")
        key_cols = [list(k.key_attributes) for k in keys]
        ok = info is not None and info["entity_set_name"] == "accounts" and key_cols == [["msdynce_contactnumber"]]
        return ok, f"account -> {info['entity_set_name'] if info else None}; contact keys {key_cols}"

    ops = [
        ("create", create),
        ("retrieve", retrieve),
        ("update", update),
        ("list with paging", list_paging),
        ("filter with apostrophe", filter_apostrophe),
        ("upsert (alternate key)", upsert),
        ("CreateMultiple", create_multiple),
        ("UpdateMultiple", update_multiple),
        ("UpsertMultiple", upsert_multiple),
        ("batch change set", batch_changeset),
        ("metadata (EntityDefinitions)", metadata),
        ("delete", delete),
    ]
    for name, fn in ops:
        run(name, fn)
    client.close()


if __name__ == "__main__":
    main()
