// The `dynamics-web-api` npm client (AleksandrRogov/DynamicsWebApi), unmodified, against the sandbox.
//
// Run by tests/sandbox/tests/compat.rs with the sandbox served over HTTPS. Environment: SALES_URL, TOKEN_URL
// (the sandbox's Entra v2 token endpoint), CLIENT_ID, CLIENT_SECRET, NODE_EXTRA_CA_CERTS naming the sandbox's CA
// certificate, NODE_PATH the node_modules holding the client.
//
// The library takes its token from the `onTokenRefresh` callback (its documented way; it has no Entra code of its
// own): the callback asks the sandbox's token endpoint with client credentials, as MSAL would.
//
// Prints one line per operation: `COMPAT {"client": ..., "op": ..., "ok": true|false, "detail": ...}`.
"use strict";

const https = require("https");
const crypto = require("crypto");
const { DynamicsWebApi } = require("dynamics-web-api");

const CLIENT = "node dynamics-web-api";

function report(op, ok, detail) {
  const line = { client: CLIENT, op, ok: !!ok, detail: String(detail ?? "").slice(0, 300) };
  process.stdout.write("COMPAT " + JSON.stringify(line) + "\n");
}

async function run(op, fn) {
  try {
    const [ok, detail] = await fn();
    report(op, ok, detail);
  } catch (e) {
    const detail = e && (e.message || JSON.stringify(e));
    process.stderr.write(`${op}: ${e && e.stack ? e.stack : detail}\n`);
    report(op, false, detail);
  }
}

function fetchToken() {
  const body = new URLSearchParams({
    client_id: process.env.CLIENT_ID,
    client_secret: process.env.CLIENT_SECRET,
    scope: `${process.env.SALES_URL}/.default`,
    grant_type: "client_credentials",
  }).toString();
  return new Promise((resolve, reject) => {
    const req = https.request(
      process.env.TOKEN_URL,
      { method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded" } },
      (res) => {
        let data = "";
        res.on("data", (c) => (data += c));
        res.on("end", () => {
          if (res.statusCode !== 200) return reject(new Error(`token endpoint ${res.statusCode}: ${data}`));
          resolve(JSON.parse(data).access_token);
        });
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

async function main() {
  const tag = crypto.randomBytes(4).toString("hex");
  const api = new DynamicsWebApi({
    serverUrl: process.env.SALES_URL,
    dataApi: { version: "9.2" },
    onTokenRefresh: fetchToken,
  });
  const st = {};

  await run("create", async () => {
    st.id = await api.create({ collection: "accounts", data: { name: `Compat ${tag}`, accountnumber: `JS-${tag}` } });
    return [typeof st.id === "string" && st.id.length === 36, st.id];
  });

  await run("retrieve", async () => {
    const r = await api.retrieve({ collection: "accounts", key: st.id, select: ["name", "accountnumber"] });
    return [r.name === `Compat ${tag}` && r.accountid === st.id, `name=${r.name}`];
  });

  await run("update", async () => {
    await api.update({ collection: "accounts", key: st.id, data: { telephone1: "555-0100" } });
    const r = await api.retrieve({ collection: "accounts", key: st.id, select: ["telephone1"] });
    return [r.telephone1 === "555-0100", r.telephone1];
  });

  await run("list with paging", async () => {
    const first = await api.retrieveMultiple({ collection: "accounts", select: ["name"], maxPageSize: 3 });
    let pages = 1;
    let link = first.oDataNextLink;
    const ids = new Set(first.value.map((r) => r.accountid));
    let rows = first.value.length;
    while (link) {
      const next = await api.retrieveMultiple({ collection: "accounts", select: ["name"], maxPageSize: 3 }, link);
      next.value.forEach((r) => ids.add(r.accountid));
      rows += next.value.length;
      pages += 1;
      link = next.oDataNextLink;
    }
    const all = await api.retrieveAll({ collection: "accounts", select: ["name"], maxPageSize: 3 });
    return [pages > 1 && ids.size === rows && all.value.length === rows, `${rows} rows in ${pages} pages; retrieveAll ${all.value.length}`];
  });

  await run("filter with apostrophe", async () => {
    const name = `O'Brien ${tag}`;
    await api.create({ collection: "accounts", data: { name } });
    const r = await api.retrieveMultiple({
      collection: "accounts",
      select: ["name"],
      filter: `name eq '${name.replace(/'/g, "''")}'`,
    });
    return [r.value.length === 1 && r.value[0].name === name, `${r.value.length} row(s)`];
  });

  await run("upsert (alternate key)", async () => {
    const key = `msdynce_contactnumber='CON-JS-${tag}'`;
    await api.upsert({ collection: "contacts", key, data: { lastname: "Created" } });
    await api.upsert({ collection: "contacts", key, data: { lastname: "Updated" } });
    const r = await api.retrieveMultiple({
      collection: "contacts",
      select: ["lastname"],
      filter: `msdynce_contactnumber eq 'CON-JS-${tag}'`,
    });
    return [r.value.length === 1 && r.value[0].lastname === "Updated", `${r.value.length} row(s)`];
  });

  await run("CreateMultiple", async () => {
    const res = await api.callAction({
      collection: "accounts",
      actionName: "Microsoft.Dynamics.CRM.CreateMultiple",
      action: {
        Targets: [0, 1, 2].map((i) => ({ "@odata.type": "Microsoft.Dynamics.CRM.account", name: `Bulk ${tag} ${i}` })),
      },
    });
    st.bulk = res.Ids;
    return [Array.isArray(res.Ids) && new Set(res.Ids).size === 3, `${res.Ids && res.Ids.length} ids`];
  });

  await run("UpdateMultiple", async () => {
    await api.callAction({
      collection: "accounts",
      actionName: "Microsoft.Dynamics.CRM.UpdateMultiple",
      action: {
        Targets: st.bulk.map((id) => ({ "@odata.type": "Microsoft.Dynamics.CRM.account", accountid: id, telephone1: "555-0199" })),
      },
    });
    const r = await api.retrieveMultiple({ collection: "accounts", select: ["telephone1"], filter: `startswith(name,'Bulk ${tag}')` });
    return [r.value.length === 3 && r.value.every((x) => x.telephone1 === "555-0199"), r.value.map((x) => x.telephone1).join(",")];
  });

  await run("UpsertMultiple", async () => {
    const targets = [0, 1].map((i) => ({
      "@odata.type": "Microsoft.Dynamics.CRM.contact",
      "@odata.id": `contacts(msdynce_contactnumber='CON-JSM-${tag}-${i}')`,
      lastname: `Bulk ${i}`,
    }));
    const action = { collection: "contacts", actionName: "Microsoft.Dynamics.CRM.UpsertMultiple", action: { Targets: targets } };
    await api.callAction(action);
    await api.callAction(action); // second time: updates, no duplicates
    const r = await api.retrieveMultiple({ collection: "contacts", select: ["lastname"], filter: `startswith(msdynce_contactnumber,'CON-JSM-${tag}')` });
    return [r.value.length === 2, `${r.value.length} rows`];
  });

  await run("batch change set", async () => {
    api.startBatch();
    api.create({ collection: "accounts", data: { name: `Batch ${tag} A` }, contentId: "1" });
    api.create({ collection: "accounts", data: { name: `Batch ${tag} B` } });
    api.update({ collection: "accounts", key: st.id, data: { telephone2: "555-0111" } });
    const res = await api.executeBatch();
    const r = await api.retrieveMultiple({ collection: "accounts", select: ["name"], filter: `startswith(name,'Batch ${tag}')` });
    return [res.length === 3 && r.value.length === 2, `${res.length} responses, ${r.value.length} rows created`];
  });

  await run("$batch rollback", async () => {
    api.startBatch();
    api.create({ collection: "accounts", data: { name: `Rollback ${tag}` } });
    // accountnumber is at most 20 characters: the service refuses this one, and the change set with it.
    api.create({ collection: "accounts", data: { name: `Rollback ${tag} 2`, accountnumber: "X".repeat(40) } });
    let failed = false;
    let why = "";
    try {
      await api.executeBatch();
    } catch (e) {
      failed = true;
      // The library rejects with the failing parts' errors.
      why = (Array.isArray(e) ? e : [e]).map((x) => `${x.status} ${x.error ? x.error.message : x.message}`).join("; ");
    }
    const r = await api.retrieveMultiple({ collection: "accounts", select: ["name"], filter: `startswith(name,'Rollback ${tag}')` });
    return [failed && r.value.length === 0, `batch failed=${failed} (${why}); rows left ${r.value.length}`];
  });

  await run("metadata (EntityDefinitions)", async () => {
    const e = await api.retrieveEntity({ key: "LogicalName='account'", select: ["EntitySetName", "PrimaryIdAttribute"] });
    const attrs = await api.retrieveAttributes({
      entityKey: "LogicalName='account'",
      castType: "Microsoft.Dynamics.CRM.PicklistAttributeMetadata",
      select: ["LogicalName"],
      expand: [{ property: "OptionSet", select: ["Options"] }],
    });
    const ctc = attrs.value.find((a) => a.LogicalName === "customertypecode");
    const customer = ctc && ctc.OptionSet.Options.find((o) => o.Value === 3);
    const label = customer && customer.Label.UserLocalizedLabel.Label;
    return [e.EntitySetName === "accounts" && e.PrimaryIdAttribute === "accountid" && label === "Customer", `account -> ${e.EntitySetName}; customertypecode 3 = ${label}`];
  });

  await run("delete", async () => {
    await api.deleteRecord({ collection: "accounts", key: st.id });
    try {
      await api.retrieve({ collection: "accounts", key: st.id });
      return [false, "still there"];
    } catch (e) {
      return [e.status === 404, `status ${e.status}`];
    }
  });
}

main().catch((e) => {
  process.stderr.write(String(e && e.stack ? e.stack : e) + "\n");
  process.exit(1);
});
