"""Checks that infra/template.yaml agrees with the code, and that it deploys.

(a) Static agreement: every Lambda binary under functions/ has a flow block in the template and every flow block
    builds a binary that exists; every P2C_* variable the Lambda code reads is set on every function (and nothing
    else is); each flow block wires its own queue, DLQ, log group, role, schedules and alarms; every company gets a
    schedule per flow and a lag alarm; the function roles grant exactly the AWS actions the function code (and its
    SQS trigger) calls, the operator policy what the CLI calls; alarm periods follow the schedule; the table matches
    the state crate's key layout and the metric dimensions the code prints.
(b) Deployment: the loops (Fn::ForEach) are expanded for five companies, SAM is translated to CloudFormation
    offline with samtranslator, and the result is created in a moto_server started here on a free port; the
    resources moto models (table, queues, functions, roles, policies, event source mappings, log groups) are read
    back and checked.

Run with `infra/check` (which installs the pinned tools), or `python3 -m pytest infra/tests`.
"""

from __future__ import annotations

import ast
import copy
import io
import json
import re
import sys
import tomllib
import warnings
import zipfile
from pathlib import Path
from urllib.parse import urlparse

import boto3
import pytest
from cfnlint.decode import cfn_yaml

sys.path.insert(0, str(Path(__file__).parent))
from expand import expand, sample_companies  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "infra" / "template.yaml"

# P2C_* variables the code reads that the template must NOT set, each with the reason.
CLI_ONLY = {
    "P2C_CLIENT_SECRET": "local runs only; deployed functions read the secret from Secrets Manager "
    "(P2C_CLIENT_SECRET_ARN), and a secret never belongs in a template",
    "P2C_QUEUE_PREFIX": "the CLI finds queues by name; each function is given its own queue URLs "
    "(P2C_QUEUE_URL, P2C_DLQ_URL)",
    "P2C_EMF": "turns the per-run metric lines on outside Lambda; in Lambda AWS_LAMBDA_FUNCTION_NAME already does",
}
# Read by the code, and may be set but need not be.
OPTIONAL = {
    "P2C_MAPPING": "optional override file; a deployment that uses one ships the file in a layer and sets the "
    "variable (see infra/README.md)",
    "P2C_SKIP_UNCHANGED": "defaults to on (skip records whose mapped content is unchanged), which is what a "
    "deployment wants; turning it off rewrites everything and is for benchmarks and investigations",
    # The F&O -> Sales sweeps' tuning: the defaults are what the Performance section measured.
    "P2C_SWEEP_PAGE_SIZE": "defaults to 10,000 products per sweep page (fits the default memory)",
    "P2C_SWEEP_DOCUMENT_PAGE_SIZE": "defaults to 1,500 document headers per sweep page",
    "P2C_FULL_SWEEP_HOURS": "defaults to a daily full sweep behind the regular ones",
    "P2C_SETTLED_AFTER_DAYS": "defaults to 30 days before an invoiced or cancelled document leaves regular sweeps",
    "P2C_SWEEP_DIGESTS": "defaults to on; off is for investigations (every sweep reads every link)",
}
# Set in each flow block (they differ per function); the rest come from Globals.
PER_FUNCTION_ENV = {"P2C_QUEUE_URL", "P2C_DLQ_URL"}
# The events ingress (functions/events): not a flow; its own block between BEGIN EVENTS and END EVENTS.
EVENTS_BINARY = "events"
# Read by the events ingress only, and not set on it, each with the reason.
EVENTS_CLI_ONLY = {
    "P2C_EVENTS_SECRET": "local runs only; the function reads its key from Secrets Manager (P2C_EVENTS_SECRET_ARN)",
}
EVENTS_OPTIONAL = {
    "P2C_EVENTS_MAX_BYTES": "defaults to 512 KiB (Dataverse trims its payloads to 256 KB)",
    "P2C_EVENT_FLOWS": "defaults to every flow; set it to take events for fewer",
}
# The order of the flows in P2C_EVENT_QUEUES (FlowName's declaration order in the sync crate).
FLOW_ORDER = [
    "accounts-to-fno",
    "contacts-to-fno",
    "products-to-sales",
    "quotes-to-fno",
    "orders-to-fno",
    "orders-to-sales",
    "invoices-to-sales",
]
SECRET_ARN = {"Fn::If": ["CreateSecret", {"Ref": "ClientSecret"}, {"Ref": "ClientSecretArn"}]}

# ----------------------------------------------------------------------------------------- AWS calls
# Every AWS SDK call in the code, and what runs it. SDK clients are held in variables or fields named `client`, so a
# call reads `client.<operation>()`; test_every_sdk_call_is_classified fails on a call missing here. The function
# roles must grant exactly the actions of LAMBDA_CALLS (plus what Lambda itself calls with the role, below), the
# operator policy those of CLI_CALLS and LAMBDA_CALLS minus what only `p2c init` does.
# (file, enclosing fn, operation) -> why
LAMBDA_CALLS = {
    ("shared/state/src/store.rs", "get", "get_item"): "watermark, resume point, lease and pause mark reads",
    ("shared/state/src/store.rs", "put_watermark", "put_item"): "a run commits its watermark",
    ("shared/state/src/store.rs", "acquire_lease", "put_item"): "a scheduled run takes the lease",
    ("shared/state/src/store.rs", "put_run", "put_item"): "the run record",
    ("shared/state/src/store.rs", "renew_lease", "update_item"): "long runs renew the lease",
    ("shared/state/src/store.rs", "budget_take", "update_item"): "the shared Dataverse request budget",
    ("shared/state/src/store.rs", "release_lease", "delete_item"): "the lease goes at the end of a run",
    ("shared/state/src/store.rs", "delete_watermark", "delete_item"): "a finished read drops its resume point",
    ("shared/state/src/store.rs", "get_links", "batch_get_item"): "links of a page",
    ("shared/state/src/store.rs", "write_batch", "batch_write_item"): "links and history of a page; a sweep writes (or clears) its digests",
    ("shared/state/src/store.rs", "query_page", "query"): "a sweep reads its range digests (p2c links and status read history and runs through it too)",
    ("shared/state/src/queues.rs", "send_chunk", "send_message_batch"): "failed records to the queue or DLQ",
    ("shared/sync/src/deps.rs", "fetch_secret", "get_secret_value"): "the Entra client secret at start-up",
}
# What the events function calls beside sending to the flows' queues (send_message_batch, in LAMBDA_CALLS); its
# role grants exactly these, and `p2c events register` (EventsOperatorPolicy) reads the same key.
EVENTS_CALLS = {
    ("shared/sync/src/entry/events/mod.rs", "load_keys", "get_secret_value"): "the events key at start-up",
}
CLI_CALLS = {
    ("shared/state/src/store.rs", "ensure_table", "describe_table"): "p2c init",
    ("shared/state/src/store.rs", "ensure_table", "create_table"): "p2c init",
    ("shared/state/src/store.rs", "wait_active", "describe_table"): "p2c init",
    ("shared/state/src/store.rs", "ensure_ttl", "describe_time_to_live"): "p2c init",
    ("shared/state/src/store.rs", "ensure_ttl", "update_time_to_live"): "p2c init",
    ("shared/state/src/store.rs", "scan_links", "scan"): "p2c reconcile",
    ("shared/state/src/store.rs", "put_pause_mark", "put_item"): "p2c pause",
    ("shared/state/src/store.rs", "delete_pause_mark", "delete_item"): "p2c resume",
    ("shared/state/src/queues.rs", "depth", "get_queue_attributes"): "p2c status",
    ("shared/state/src/queues.rs", "lookup", "get_queue_url"): "the CLI finds queues by name",
    ("shared/state/src/queues.rs", "arn", "get_queue_attributes"): "the CLI finds queues by name",
    ("shared/state/src/queues.rs", "create", "create_queue"): "p2c init",
    ("shared/state/src/queues.rs", "receive_inner", "receive_message"): "p2c drain, p2c replay",
    ("shared/state/src/queues.rs", "delete_chunk", "delete_message_batch"): "p2c drain, p2c replay",
    ("shared/state/src/queues.rs", "make_visible", "change_message_visibility_batch"): "p2c replay --dry-run",
    ("tools/p2c/src/schedules.rs", "list", "list_schedules"): "p2c pause, p2c resume",
    ("tools/p2c/src/schedules.rs", "list", "get_schedule"): "p2c pause, p2c resume",
    ("tools/p2c/src/schedules.rs", "set_state", "update_schedule"): "p2c pause, p2c resume",
}
# Creating what the stack creates: local emulators only, not in the operator policy.
INIT_ONLY = {"describe_table", "create_table", "describe_time_to_live", "update_time_to_live", "create_queue"}
# State-crate entry points behind CLI_CALLS, and the Lambda code that may still mention them (with the reason).
CLI_ENTRY_POINTS = {
    "ensure_table": {},
    "ensure": {},
    "scan_links": {},
    "history": {},
    "recent_runs": {},
    "depth": {},
    "receive": {},
    "move_messages": {},
    "move_messages_where": {},
    "put_pause_mark": {},
    "delete_pause_mark": {},
    # Deps::queue_pair falls back to finding the queues by name when P2C_QUEUE_URL/P2C_DLQ_URL are not set, which
    # test_flow_blocks_are_self_consistent makes sure never happens in Lambda.
    "urls": {
        "shared/sync/src/deps.rs": "only without P2C_QUEUE_URL and P2C_DLQ_URL",
        "shared/sync/src/entry/events/sink.rs": "only without P2C_EVENT_QUEUES (the CLI's local ingress)",
    },
}
SERVICE_OF_FILE = {
    "shared/state/src/store.rs": "dynamodb",
    "shared/state/src/store/digests.rs": "dynamodb",
    "shared/state/src/queues.rs": "sqs",
    "shared/sync/src/deps.rs": "secretsmanager",
    "shared/sync/src/entry/events/mod.rs": "secretsmanager",
    "tools/p2c/src/schedules.rs": "scheduler",
}
# Batch operations are authorised by the single-item action.
IAM_ACTION_OF = {
    "send_message_batch": "SendMessage",
    "delete_message_batch": "DeleteMessage",
    "change_message_visibility_batch": "ChangeMessageVisibility",
}
# What Lambda calls with the function's role: its SQS poller (the AWSLambdaSQSQueueExecutionRole actions) and the
# runtime's logging.
SQS_POLLER_ACTIONS = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}
LOG_ACTIONS = {"logs:CreateLogStream", "logs:PutLogEvents"}

# moto's warnings about resource types it skips are checked in the `stack` fixture, not repeated in the summary.
pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS::")

# ----------------------------------------------------------------------------------------------- helpers

COMPANIES = sample_companies(5)


def load_template() -> dict:
    # cfn-lint's loader understands the short intrinsic tags (!Ref, !Sub, ...) and yields plain dicts.
    return json.loads(json.dumps(cfn_yaml.loads(TEMPLATE_PATH.read_text())))


def expanded(raw: dict, companies: list[str]) -> dict:
    """The SAM template as CloudFormation passes it to the SAM transform: loops expanded for these companies."""
    return expand(raw, {"Companies": companies})


def resources(t: dict, rtype: str) -> dict[str, dict]:
    return {k: v for k, v in t["Resources"].items() if v["Type"] == rtype}


def prefix_of(binary: str) -> str:
    """accounts-to-fno -> AccountsToFno: the logical-id prefix of a flow block."""
    return "".join(p.capitalize() for p in binary.split("-"))


def legal_entity(entry: str) -> str:
    return entry.split("=", 1)[0]


def company_id(value) -> str:
    """The company a schedule or alarm names: !Select [0, !Split ['=', '<entry>']] resolved."""
    assert value["Fn::Select"][0] == 0, value
    sep, entry = value["Fn::Select"][1]["Fn::Split"]
    assert sep == "=" and isinstance(entry, str), value
    return legal_entity(entry)


def sub(value, **extra) -> str:
    """A Fn::Sub [text, {Company: <select>}] resolved."""
    text, variables = value["Fn::Sub"]
    for k, v in variables.items():
        text = text.replace("${" + k + "}", company_id(v))
    for k, v in extra.items():
        text = text.replace("${" + k + "}", v)
    return text


def workspace_binaries() -> set[str]:
    """Binaries of the crates under functions/: [[bin]] entries, else the package name when src/main.rs exists."""
    out: set[str] = set()
    for manifest in sorted((ROOT / "functions").glob("*/Cargo.toml")):
        crate = tomllib.loads(manifest.read_text())
        bins = [b["name"] for b in crate.get("bin", [])]
        if not bins and (manifest.parent / "src" / "main.rs").exists():
            bins = [crate["package"]["name"]]
        bins += [p.stem for p in (manifest.parent / "src" / "bin").glob("*.rs")]
        out.update(bins)
    return out


def without_tests(text: str) -> str:
    # Unit tests sit at the end of a file behind #[cfg(test)].
    return text.split("#[cfg(test)]", 1)[0]


def is_events_source(src: Path) -> bool:
    """Source of the events ingress: its function and its module of the sync crate."""
    rel = src.relative_to(ROOT).as_posix()
    return rel.startswith(f"functions/{EVENTS_BINARY}/") or rel.startswith("shared/sync/src/entry/events/")


def code_env_vars(which: str = "all") -> set[str]:
    """P2C_* names the Lambda code reads: string literals in shared/*/src and functions/*/src, unit tests excluded.
    `which`: "all", "events" (the events ingress's sources) or "flows" (every other source)."""
    names: set[str] = set()
    for src in sorted([*ROOT.glob("shared/*/src/**/*.rs"), *ROOT.glob("functions/*/src/**/*.rs")]):
        if which != "all" and is_events_source(src) != (which == "events"):
            continue
        names.update(re.findall(r'"(P2C_[A-Z0-9_]+)"', without_tests(src.read_text())))
    return names


def events_only_env_vars() -> set[str]:
    """P2C_* names only the events ingress reads."""
    return code_env_vars("events") - code_env_vars("flows")


def sdk_calls() -> set[tuple[str, str, str]]:
    """(file, enclosing fn, operation) for every `client.<operation>()` in the non-test code."""
    out = set()
    files = [*ROOT.glob("shared/*/src/**/*.rs"), *ROOT.glob("functions/*/src/**/*.rs"), *ROOT.glob("tools/*/src/**/*.rs")]
    for src in sorted(files):
        text = without_tests(src.read_text())
        fns = [(m.start(), m.group(1)) for m in re.finditer(r"\bfn\s+([a-z_][a-z0-9_]*)", text)]
        for m in re.finditer(r"\bclient\s*\.\s*([a-z][a-z0-9_]*)\s*\(\)", text):
            enclosing = [name for pos, name in fns if pos < m.start()]
            out.add((str(src.relative_to(ROOT)), enclosing[-1] if enclosing else "", m.group(1)))
    return out


def iam_action(file: str, op: str) -> str:
    return f"{SERVICE_OF_FILE[file]}:" + IAM_ACTION_OF.get(op, "".join(p.capitalize() for p in op.split("_")))


def flow_functions(t: dict) -> dict[str, tuple[str, dict]]:
    """binary -> (logical id, resource) for every flow's function (all but the events ingress)."""
    return {b: f for b, f in all_functions(t).items() if b != EVENTS_BINARY}


def all_functions(t: dict) -> dict[str, tuple[str, dict]]:
    """binary -> (logical id, resource) for every AWS::Serverless::Function."""
    out = {}
    for lid, r in resources(t, "AWS::Serverless::Function").items():
        binary = r.get("Metadata", {}).get("BuildProperties", {}).get("Binary")
        assert binary, f"{lid}: Metadata.BuildProperties.Binary is missing"
        assert binary not in out, f"binary {binary} is declared by {out[binary][0]} and {lid}"
        out[binary] = (lid, r)
    return out


def sam_to_cfn(t: dict, code_uri: str = "s3://p2c-artifacts/bootstrap.zip") -> dict:
    """SAM -> CloudFormation, offline. CodeUri must be an S3 URI for the translator (as `sam package` would do)."""
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    sam = copy.deepcopy(t)
    sam["Globals"]["Function"]["CodeUri"] = code_uri
    # A session with a region and no credentials: the translator only reads the region (for pseudo-parameters).
    session = boto3.session.Session(region_name="us-east-1")
    translator = Translator(managed_policy_map=managed_policy_map(), sam_parser=Parser(), boto_session=session)
    return translator.translate(sam_template=sam, parameter_values={})


def managed_policy_map() -> dict:
    """cfn-lint's bundled map where it ships one, else samtranslator's; the template uses no managed policy."""
    import cfnlint
    import samtranslator

    for p in [
        Path(cfnlint.__file__).parent / "data" / "Serverless" / "ManagedPolicies.json",
        Path(samtranslator.__file__).parent / "internal" / "data" / "aws_managed_policies.json",
    ]:
        if p.exists():
            data = json.loads(p.read_text())
            # samtranslator's file is keyed by partition.
            return data.get("aws", data) if isinstance(data.get("aws"), dict) else data
    return {}


def statements(role: dict) -> list[dict]:
    out = []
    for pol in role["Properties"].get("Policies", []):
        for st in pol["PolicyDocument"]["Statement"]:
            out.extend(conditional(st))
    return out


def conditional(st) -> list[dict]:
    """A statement, or the true branch of !If [cond, statement, AWS::NoValue] (the condition is asserted apart)."""
    if set(st) == {"Fn::If"}:
        _, yes, no = st["Fn::If"]
        assert no == {"Ref": "AWS::NoValue"}, st
        return [yes]
    return [st]


def as_list(x) -> list:
    return x if isinstance(x, list) else [x]


def key(x) -> str:
    return json.dumps(x, sort_keys=True)


def grants(sts: list[dict]) -> dict[str, set[str]]:
    """resource (JSON) -> actions."""
    out: dict[str, set[str]] = {}
    for st in sts:
        assert st["Effect"] == "Allow"
        for r in as_list(st["Resource"]):
            out.setdefault(key(r), set()).update(as_list(st["Action"]))
    return out


def policy_document(doc) -> dict:
    """A policy as IAM returns it: a dict (boto3 decodes JSON), a JSON string, or - for inline policies moto
    created through CloudFormation - a Python repr of the dict."""
    if isinstance(doc, dict):
        return doc
    try:
        return json.loads(doc)
    except json.JSONDecodeError:
        return ast.literal_eval(doc)


def alarms(t: dict) -> dict[str, dict]:
    return {k: v["Properties"] for k, v in resources(t, "AWS::CloudWatch::Alarm").items()}


# ------------------------------------------------------------------------------------- (a) agreement


@pytest.fixture(scope="module")
def raw() -> dict:
    return load_template()


@pytest.fixture(scope="module")
def template(raw) -> dict:
    return expanded(raw, COMPANIES)


def test_every_binary_has_a_function_and_every_function_a_binary(template):
    in_template = set(all_functions(template))
    in_workspace = workspace_binaries()
    assert in_workspace, "no binaries found under functions/"
    missing = in_workspace - in_template
    assert not missing, f"binaries without a flow block in infra/template.yaml: {sorted(missing)}"
    extra = in_template - in_workspace
    assert not extra, f"template functions whose binary is not under functions/: {sorted(extra)}"


def test_functions_are_built_by_cargo_lambda_for_al2023(raw, template):
    g = template["Globals"]["Function"]
    assert (g["Runtime"], g["Handler"]) == ("provided.al2023", "bootstrap")
    assert g["CodeUri"] == "../", "CodeUri must be the workspace root (where target/ lives)"
    # Architecture and memory are parameters; arm64 (Graviton) is the cheaper default.
    assert g["Architectures"] == [{"Ref": "Architecture"}]
    assert g["MemorySize"] == {"Ref": "MemorySize"}
    arch = raw["Parameters"]["Architecture"]
    assert (arch["Default"], set(arch["AllowedValues"])) == ("arm64", {"arm64", "x86_64"})
    for binary, (lid, fn) in all_functions(template).items():
        assert fn["Metadata"]["BuildMethod"] == "rust-cargolambda", lid
        for k in ("Runtime", "Handler", "Architectures", "CodeUri", "Timeout", "MemorySize"):
            assert k not in fn["Properties"], f"{lid} overrides Globals.{k}"
    # cargo-lambda refuses `--arm64` (what sam build passes for arm64) together with a target from the workspace
    # metadata, and 1.9 cannot even read a target given there as a string: the build target comes from SAM only.
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
    lambda_build = cargo.get("workspace", {}).get("metadata", {}).get("lambda", {}).get("build", {})
    assert "target" not in lambda_build, "[workspace.metadata.lambda.build] target breaks sam build"


def test_env_vars_agree_with_the_code(template):
    read = code_env_vars()
    events_only = events_only_env_vars()
    for name in {**CLI_ONLY, **OPTIONAL}:
        assert name in read, f"{name} is listed here but the code no longer reads it; drop it from the list"
    for name in {**EVENTS_CLI_ONLY, **EVENTS_OPTIONAL}:
        assert name in events_only, f"{name} is listed here but only the events ingress should read it"
    wanted = read - set(CLI_ONLY) - set(OPTIONAL) - events_only
    assert PER_FUNCTION_ENV <= wanted, "the code no longer reads the per-function queue URLs"
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    # The Stack dimension of the metrics, and the companies exactly as the Companies parameter lists them.
    assert env["P2C_STACK"] == {"Ref": "AWS::StackName"}
    assert env["P2C_COMPANIES"] == {"Fn::Join": [",", {"Ref": "Companies"}]}
    cfn = sam_to_cfn(template)
    events_lid = all_functions(template)[EVENTS_BINARY][0]
    for lid, fn in resources(cfn, "AWS::Lambda::Function").items():
        env = set(fn["Properties"].get("Environment", {}).get("Variables", {}))
        p2c = {v for v in env if v.startswith("P2C_")}
        if lid == events_lid:
            # Globals give it the flows' variables too (harmless: its role reaches nothing they name).
            want = events_only - set(EVENTS_CLI_ONLY) - set(EVENTS_OPTIONAL)
            assert not (want - p2c), f"{lid} lacks {sorted(want - p2c)} (read by the events ingress)"
            assert not (p2c & set(EVENTS_CLI_ONLY)), f"{lid} sets {sorted(p2c & set(EVENTS_CLI_ONLY))}"
            assert not (p2c & PER_FUNCTION_ENV), f"{lid} is not a flow: it has no queue of its own"
            assert not (p2c - read), f"{lid} sets {sorted(p2c - read)}, which no code reads"
            continue
        assert not (p2c & events_only), f"{lid} sets the events ingress's variables"
        assert not (wanted - p2c), f"{lid} lacks {sorted(wanted - p2c)} (read by the code)"
        assert not (p2c - read), f"{lid} sets {sorted(p2c - read)}, which no code reads"
        assert not (p2c & set(CLI_ONLY)), f"{lid} sets CLI-only {sorted(p2c & set(CLI_ONLY))}"


def test_flow_blocks_are_self_consistent(template):
    text = TEMPLATE_PATH.read_text()
    res = template["Resources"]
    for binary, (lid, fn) in flow_functions(template).items():
        p = prefix_of(binary)
        assert lid == f"{p}Function", f"{lid}: a flow block's function is named <Prefix>Function ({p}Function)"
        # The block is delimited, and holds every resource (and loop) with its prefix.
        begin, end = f"BEGIN FLOW {binary}\n", f"END FLOW {binary}\n"
        assert text.count(begin) == 1 and text.count(end) == 1, f"markers of flow {binary}"
        block = text[text.index(begin) : text.index(end)]
        for k in res:
            # The schedules come out of the loop, which must be in the block.
            if k.startswith(p) and res[k]["Type"] != "AWS::Scheduler::Schedule":
                assert f"\n  {k}:\n" in block, f"{k} is outside the BEGIN/END FLOW {binary} block"
        assert f"\n  Fn::ForEach::{p}Schedules:\n" in block, f"the schedule loop of {binary} is outside its block"
        props = fn["Properties"]
        assert props["FunctionName"] == {"Fn::Sub": f"${{AWS::StackName}}-{binary}"}

        # Queue and DLQ: its own, named after the flow (the CLI finds them by name).
        q, d, lg, role = f"{p}Queue", f"{p}Dlq", f"{p}LogGroup", f"{p}Role"
        env = props["Environment"]["Variables"]
        assert env == {"P2C_QUEUE_URL": {"Ref": q}, "P2C_DLQ_URL": {"Ref": d}}, lid
        qp, dp = res[q]["Properties"], res[d]["Properties"]
        assert qp["QueueName"] == {"Fn::Sub": f"${{AWS::StackName}}-{binary}"}
        assert dp["QueueName"] == {"Fn::Sub": f"${{AWS::StackName}}-{binary}-dlq"}
        assert qp["RedrivePolicy"] == {
            "deadLetterTargetArn": {"Fn::GetAtt": [d, "Arn"]},
            "maxReceiveCount": {"Ref": "ReceiveLimit"},
        }
        assert qp["VisibilityTimeout"] == {"Fn::FindInMap": ["Timeouts", {"Ref": "FunctionTimeout"}, "Visibility"]}
        assert dp["MessageRetentionPeriod"] == 14 * 24 * 3600
        # A message's age counts from its first enqueue, in the DLQ too: leave dead letters a week at least.
        assert dp["MessageRetentionPeriod"] - qp["MessageRetentionPeriod"] >= 7 * 24 * 3600
        assert qp["SqsManagedSseEnabled"] is True and dp["SqsManagedSseEnabled"] is True

        # The SQS trigger.
        events = props["Events"]
        sqs = [e["Properties"] for e in events.values() if e["Type"] == "SQS"]
        assert len(sqs) == 1, f"{lid}: one SQS event"
        assert sqs[0] == {
            "Queue": {"Fn::GetAtt": [q, "Arn"]},
            "BatchSize": {"Ref": "SqsBatchSize"},
            "MaximumBatchingWindowInSeconds": {"Ref": "SqsBatchWindowSeconds"},
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "ScalingConfig": {"MaximumConcurrency": {"Ref": "MaxConcurrency"}},
        }

        # Logs: JSON into its own log group with retention, at the levels the parameters give.
        assert props["LoggingConfig"] == {
            "LogFormat": "JSON",
            "ApplicationLogLevel": {"Ref": "LogLevel"},
            "SystemLogLevel": {"Ref": "SystemLogLevel"},
            "LogGroup": {"Ref": lg},
        }
        assert res[lg]["Properties"] == {
            "LogGroupName": {"Fn::Sub": f"/aws/lambda/${{AWS::StackName}}-{binary}"},
            "RetentionInDays": {"Ref": "LogRetentionDays"},
        }

        # Role: only this flow's queue/DLQ/log group, the table and the secret (see test_roles_grant_what_the_code_
        # calls for the actions).
        assert props["Role"] == {"Fn::GetAtt": [role, "Arn"]}
        allowed = {
            key(x)
            for x in [
                {"Fn::GetAtt": [q, "Arn"]},
                {"Fn::GetAtt": [d, "Arn"]},
                {"Fn::GetAtt": [lg, "Arn"]},
                {"Fn::GetAtt": ["StateTable", "Arn"]},
                SECRET_ARN,
                {"Ref": "SecretKmsKeyArn"},
            ]
        }
        for r in grants(statements(res[role])):
            assert r in allowed, f"{role} grants on {r}"
        sched_role = res[f"{p}SchedulerRole"]
        assert [s["Resource"] for s in statements(sched_role)] == [{"Fn::GetAtt": [lid, "Arn"]}]
        assert [s["Action"] for s in statements(sched_role)] == ["lambda:InvokeFunction"]

        # Alarms: DLQ depth, function errors, age of the oldest queued message.
        mine = {
            (a["Namespace"], a["MetricName"]): a
            for a in alarms(template).values()
            if "Dimensions" in a
            and any(
                dim["Value"] in ({"Ref": lid}, {"Fn::GetAtt": [q, "QueueName"]}, {"Fn::GetAtt": [d, "QueueName"]})
                for dim in a["Dimensions"]
            )
        }
        dlq = mine[("AWS/SQS", "ApproximateNumberOfMessagesVisible")]
        assert dlq["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [d, "QueueName"]}}]
        assert (dlq["Threshold"], dlq["ComparisonOperator"]) == (0, "GreaterThanThreshold")
        errs = mine[("AWS/Lambda", "Errors")]
        assert errs["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": lid}}]
        age = mine[("AWS/SQS", "ApproximateAgeOfOldestMessage")]
        assert age["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [q, "QueueName"]}}]


def test_companies_parameter_is_checked_as_the_code_parses_it(raw):
    """Companies is P2C_COMPANIES as a list: each entry <legal entity>=<business unit>, the legal entity as
    parse_companies (shared/sync/src/config.rs) leaves it: lower case, 1 to 4 letters or digits."""
    param = raw["Parameters"]["Companies"]
    assert param["Type"] == "CommaDelimitedList" and "Default" not in param
    pattern = re.compile(param["AllowedPattern"])
    good = ["usmf=US Sales", "usrt=0b9cf0a4-63e2-4dd7-9a54-6a7c1c0e3f8d", "a=b", "dat=BU = with equals", "1234=x"]
    bad = [
        "USMF=US Sales",  # the code lower-cases; schedules, alarms and metrics would name another company
        "usmfx=US",  # more than 4
        "us-1=US",  # not a letter or digit
        "=US",  # no legal entity
        "usmf=",  # no business unit
        "usmf= US",  # spaces at the ends of the business unit (the code trims, the alarm names would not)
        " usmf=US",
        "usmf",
    ]
    for entry in good:
        assert pattern.fullmatch(entry), entry
    for entry in bad:
        assert not pattern.fullmatch(entry), entry
    config = (ROOT / "shared" / "sync" / "src" / "config.rs").read_text()
    for rule in ("to_ascii_lowercase()", "le.len() > 4", "is_ascii_alphanumeric()"):
        assert rule in config, f"parse_companies changed ({rule}); update the Companies pattern and this test"


def test_one_schedule_per_flow_and_company(raw, template):
    """What `p2c pause`/`p2c resume` rely on (tools/p2c/src/schedules.rs): every schedule is in the group named after
    the stack, targets its flow's function and names flow and company in its Input."""
    group = template["Resources"]["ScheduleGroup"]
    assert group["Properties"]["Name"] == {"Ref": "AWS::StackName"}
    schedules = resources(template, "AWS::Scheduler::Schedule")
    fns = flow_functions(template)
    assert len(schedules) == len(fns) * len(COMPANIES)
    seen = set()
    for lid, s in schedules.items():
        sp = s["Properties"]
        binary = next(b for b, (flid, _) in fns.items() if sp["Target"]["Arn"] == {"Fn::GetAtt": [flid, "Arn"]})
        p = prefix_of(binary)
        assert lid.startswith(f"{p}Schedule"), lid
        input_ = json.loads(sub(sp["Target"]["Input"]))
        assert input_["flow"] == binary and set(input_) == {"flow", "company"}, input_
        seen.add((binary, input_["company"]))
        assert "Name" not in sp, f"{lid}: CloudFormation names schedules (a business unit change would clash)"
        assert sp["GroupName"] == {"Ref": "ScheduleGroup"}
        assert sp["State"] == {"Ref": "ScheduleState"}
        assert sp["ScheduleExpression"] == {"Fn::FindInMap": ["Schedule", {"Ref": "ScheduleMinutes"}, "Expression"]}
        assert sp["Target"]["RoleArn"] == {"Fn::GetAtt": [f"{p}SchedulerRole", "Arn"]}
        assert sp["Target"]["RetryPolicy"] == {"MaximumRetryAttempts": 0}
    assert seen == {(b, legal_entity(c)) for b in fns for c in COMPANIES}
    state = raw["Parameters"]["ScheduleState"]
    assert (state["Default"], set(state["AllowedValues"])) == ("ENABLED", {"ENABLED", "DISABLED"})


def test_one_lag_alarm_per_company_over_every_flow(template):
    metrics_rs = (ROOT / "shared" / "sync" / "src" / "entry" / "metrics.rs").read_text()
    assert '"Dimensions": [["Stack", "Flow", "Company"]]' in metrics_rs, "the metric dimensions changed"
    lag = {k: a for k, a in alarms(template).items() if k.startswith("LagAlarm")}
    assert len(lag) == len(COMPANIES)
    fns = set(flow_functions(template))
    companies = set()
    for lid, a in lag.items():
        exprs = [m for m in a["Metrics"] if "Expression" in m]
        stats = [m for m in a["Metrics"] if "MetricStat" in m]
        assert len(exprs) == 1 and exprs[0]["ReturnData"] is True
        flows, company = set(), set()
        for m in stats:
            assert m["ReturnData"] is False
            ms = m["MetricStat"]
            assert (ms["Metric"]["Namespace"], ms["Metric"]["MetricName"], ms["Stat"]) == ("p2c", "Lag", "Maximum")
            assert ms["Period"] == {"Fn::FindInMap": ["Schedule", {"Ref": "ScheduleMinutes"}, "AlarmPeriod"]}
            dims = {d["Name"]: d["Value"] for d in ms["Metric"]["Dimensions"]}
            assert set(dims) == {"Stack", "Flow", "Company"}
            assert dims["Stack"] == {"Ref": "AWS::StackName"}
            flows.add(dims["Flow"])
            company.add(company_id(dims["Company"]))
            # A flow that reported no run counts as behind.
            assert f"FILL({m['Id']}, 999999999)" in exprs[0]["Expression"], m["Id"]
        assert flows == fns, f"{lid} misses flows {sorted(fns - flows)}"
        assert len(company) == 1
        companies |= company
        assert exprs[0]["Expression"].startswith("MAX([")
        assert (a["EvaluationPeriods"], a["DatapointsToAlarm"]) == (3, 2)
        assert a["TreatMissingData"] == "breaching"
        assert a["Threshold"] == {
            "Fn::If": [
                "LagAuto",
                {"Fn::FindInMap": ["Schedule", {"Ref": "ScheduleMinutes"}, "LagSeconds"]},
                {"Ref": "LagAlarmSeconds"},
            ]
        }
        assert a["ActionsEnabled"] == {"Fn::If": ["SchedulesEnabled", True, False]}
    assert companies == {legal_entity(c) for c in COMPANIES}


def test_alarm_periods_fit_the_schedule(raw, template):
    minutes = raw["Parameters"]["ScheduleMinutes"]["AllowedValues"]
    table = raw["Mappings"]["Schedule"]
    assert set(table) == set(minutes)
    for m in minutes:
        row, interval = table[m], int(m) * 60
        n, unit = (int(m) // 1440, "day") if int(m) % 1440 == 0 else (
            (int(m) // 60, "hour") if int(m) % 60 == 0 else (int(m), "minute")
        )
        assert row["Expression"] == f"rate({n} {unit}{'s' if n > 1 else ''})", row
        for period in (row["AlarmPeriod"], row["ErrorPeriod"]):
            # Valid CloudWatch periods; at least one run per period; 3 periods within CloudWatch's limit (1 day in
            # all below 1-hour periods, 7 days above).
            assert period % 60 == 0 and period >= interval, (m, row)
            assert 3 * period <= (604800 if period >= 3600 else 86400), (m, row)
        assert row["ErrorPeriod"] >= 300
        assert row["LagSeconds"] >= max(3600, 3 * interval), (m, row)
    for binary, (lid, _) in flow_functions(template).items():
        errs = template["Resources"][f"{prefix_of(binary)}ErrorsAlarm"]["Properties"]
        assert errs["Period"] == {"Fn::FindInMap": ["Schedule", {"Ref": "ScheduleMinutes"}, "ErrorPeriod"]}
        # One failed invocation (a transient error the next run redoes) does not page; two bad periods do.
        assert (errs["EvaluationPeriods"], errs["DatapointsToAlarm"], errs["Threshold"]) == (3, 2, 0)
        assert errs["TreatMissingData"] == "notBreaching"


def test_every_alarm_notifies_the_topic_and_when_it_clears(template):
    topic = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
    for lid, a in alarms(template).items():
        assert a["AlarmActions"] == topic, lid
        assert a["OKActions"] == topic, lid


def test_log_levels_keep_the_metric_lines_and_platform_reports(raw):
    # Lambda gives a line without a level (the EMF metric lines) the level INFO, so an application level above INFO
    # would drop the metrics the lag alarms read; a system level above INFO drops START and REPORT.
    assert set(raw["Parameters"]["LogLevel"]["AllowedValues"]) <= {"TRACE", "DEBUG", "INFO"}
    assert set(raw["Parameters"]["SystemLogLevel"]["AllowedValues"]) <= {"DEBUG", "INFO"}
    assert raw["Parameters"]["SystemLogLevel"]["Default"] == "INFO"


def test_every_sdk_call_is_classified():
    found = sdk_calls()
    known = set(LAMBDA_CALLS) | set(CLI_CALLS) | set(EVENTS_CALLS)
    assert not (found - known), f"AWS SDK calls not classified in this file: {sorted(found - known)}"
    assert not (known - found), f"classified calls the code no longer makes: {sorted(known - found)}"
    # The CLI-only entry points are not called from the Lambda code (shared/sync outside ops/, and functions/).
    lambda_code = {
        str(p.relative_to(ROOT)): without_tests(p.read_text())
        for p in [*ROOT.glob("shared/sync/src/**/*.rs"), *ROOT.glob("functions/*/src/**/*.rs")]
        if "/ops/" not in str(p)
    }
    for name, exceptions in CLI_ENTRY_POINTS.items():
        for path, text in lambda_code.items():
            if re.search(rf"\.{name}\(", text) and path not in exceptions:
                pytest.fail(f"{path} calls {name}, which CLI_CALLS says only the CLI uses")


def test_roles_grant_what_the_code_calls(template):
    """Each function role grants exactly the actions its code calls (plus the SQS poller's and the log writer's),
    on its own resources; the operator policy grants what the CLI calls on top, minus creating what the stack
    creates."""
    res = template["Resources"]
    lambda_actions = {iam_action(f, op) for (f, _, op) in LAMBDA_CALLS}
    by_service = lambda svc: {a for a in lambda_actions if a.startswith(svc + ":")}  # noqa: E731
    for binary, (lid, _) in flow_functions(template).items():
        p = prefix_of(binary)
        g = grants(statements(res[f"{p}Role"]))
        q, d = key({"Fn::GetAtt": [f"{p}Queue", "Arn"]}), key({"Fn::GetAtt": [f"{p}Dlq", "Arn"]})
        assert g[key({"Fn::GetAtt": ["StateTable", "Arn"]})] == by_service("dynamodb")
        assert g[q] == by_service("sqs") | SQS_POLLER_ACTIONS
        assert g[d] == by_service("sqs")
        assert g[key(SECRET_ARN)] == by_service("secretsmanager")
        assert g[key({"Fn::GetAtt": [f"{p}LogGroup", "Arn"]})] == LOG_ACTIONS
        assert g[key({"Ref": "SecretKmsKeyArn"})] == {"kms:Decrypt"}
        every = set().union(*g.values())
        assert every == lambda_actions | SQS_POLLER_ACTIONS | LOG_ACTIONS | {"kms:Decrypt"}, lid

    op = res["OperatorPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    sts = [s for st in op for s in conditional(st)]
    cli_actions = {iam_action(f, o) for (f, _, o) in {**LAMBDA_CALLS, **CLI_CALLS} if o not in INIT_ONLY}
    granted = set().union(*(set(as_list(s["Action"])) for s in sts))
    assert granted == cli_actions | {"kms:Decrypt", "iam:PassRole"}, sorted(granted ^ cli_actions)
    by_sid = {s["Sid"]: s for s in sts}
    fns = flow_functions(template)
    queues = {key({"Fn::GetAtt": [f"{prefix_of(b)}{k}", "Arn"]}) for b in fns for k in ("Queue", "Dlq")}
    assert {key(r) for r in by_sid["Queues"]["Resource"]} == queues
    assert by_sid["State"]["Resource"] == {"Fn::GetAtt": ["StateTable", "Arn"]}
    assert by_sid["Secret"]["Resource"] == SECRET_ARN
    assert by_sid["ListSchedules"]["Action"] == "scheduler:ListSchedules"  # no resource-level permissions
    assert "${ScheduleGroup}/*" in by_sid["PauseResume"]["Resource"]["Fn::Sub"]
    roles = {key({"Fn::GetAtt": [f"{prefix_of(b)}SchedulerRole", "Arn"]}) for b in fns}
    assert {key(r) for r in by_sid["PassSchedulerRoles"]["Resource"]} == roles
    assert by_sid["PassSchedulerRoles"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}
    }
    outputs = template["Outputs"]
    assert outputs["OperatorPolicyArn"]["Value"] == {"Ref": "OperatorPolicy"}


def test_a_customer_managed_key_is_used_only_through_secrets_manager(template):
    via = {"StringEquals": {"kms:ViaService": {"Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"}}}
    res = template["Resources"]
    policies = [p["PolicyDocument"]["Statement"] for r in resources(template, "AWS::IAM::Role").values()
                for p in r["Properties"]["Policies"]]
    policies.append(res["OperatorPolicy"]["Properties"]["PolicyDocument"]["Statement"])
    found = 0
    for sts in policies:
        for st in sts:
            if "kms:Decrypt" in json.dumps(st):
                assert st["Fn::If"][0] == "HasSecretKey", st
                assert st["Fn::If"][1]["Condition"] == via, st
                assert st["Fn::If"][1]["Resource"] == {"Ref": "SecretKmsKeyArn"}
                found += 1
    # Every flow role, the events role, the operator policy.
    assert found == len(flow_functions(template)) + 2
    secret = res["ClientSecret"]["Properties"]
    assert secret["KmsKeyId"] == {"Fn::If": ["HasSecretKey", {"Ref": "SecretKmsKeyArn"}, {"Ref": "AWS::NoValue"}]}


def test_events_block(template):
    """The events ingress: its own block, a Function URL, reserved concurrency, its key, sending only to the flows'
    queues, reading only its key, alarms on refused calls and on queueing failures."""
    text = TEMPLATE_PATH.read_text()
    res = template["Resources"]
    lid, fn = all_functions(template)[EVENTS_BINARY]
    assert lid == "EventsFunction"
    begin, end = "BEGIN EVENTS\n", "END EVENTS\n"
    assert text.count(begin) == 1 and text.count(end) == 1
    block = text[text.index(begin) : text.index(end)]
    for k in [k for k in res if k.startswith("Events")]:
        assert f"\n  {k}:\n" in block, f"{k} is outside the BEGIN/END EVENTS block"
    props = fn["Properties"]
    assert props["FunctionName"] == {"Fn::Sub": "${AWS::StackName}-events"}
    assert props["FunctionUrlConfig"]["AuthType"] == "NONE"
    assert props["ReservedConcurrentExecutions"] == {"Ref": "EventsReservedConcurrency"}
    assert "Events" not in props, "the ingress has no SQS trigger or schedule"
    assert props["LoggingConfig"]["LogFormat"] == "JSON"
    assert res["EventsLogGroup"]["Properties"]["LogGroupName"] == {"Fn::Sub": "/aws/lambda/${AWS::StackName}-events"}
    env = props["Environment"]["Variables"]
    assert env["P2C_EVENTS_SECRET_ARN"] == {"Ref": "EventsKey"}
    key_props = res["EventsKey"]["Properties"]
    assert "GenerateSecretString" in key_props
    assert key_props["KmsKeyId"] == {"Fn::If": ["HasSecretKey", {"Ref": "SecretKmsKeyArn"}, {"Ref": "AWS::NoValue"}]}
    flows = sorted(flow_functions(template))
    assert sorted(FLOW_ORDER) == flows, "FLOW_ORDER lists every flow"
    assert env["P2C_EVENT_QUEUES"]["Fn::Sub"].split(",") == [f"{b}=${{{prefix_of(b)}Queue}}" for b in FLOW_ORDER]
    # Role: send to the flows' queues (not DLQs), read its own key, write its own logs; nothing else.
    g = grants(statements(res["EventsRole"]))
    events_actions = {iam_action(f, op) for (f, _, op) in EVENTS_CALLS}
    assert g == {
        key({"Fn::GetAtt": ["EventsLogGroup", "Arn"]}): LOG_ACTIONS,
        key({"Ref": "EventsKey"}): events_actions,
        key({"Ref": "SecretKmsKeyArn"}): {"kms:Decrypt"},
        **{key({"Fn::GetAtt": [f"{prefix_of(b)}Queue", "Arn"]}): {"sqs:SendMessage"} for b in flows},
    }, g
    op = [s for st in res["EventsOperatorPolicy"]["Properties"]["PolicyDocument"]["Statement"] for s in conditional(st)]
    assert grants(op) == {key({"Ref": "EventsKey"}): events_actions, key({"Ref": "SecretKmsKeyArn"}): {"kms:Decrypt"}}
    # Alarms on the metrics the ingress logs (EMF), by its function name.
    src = (ROOT / "shared/sync/src/entry/events/mod.rs").read_text()
    assert '[["FunctionName"]]' in src
    a = alarms(template)
    for alarm, metric in [("EventsRejectedAlarm", "Rejected"), ("EventsErrorsAlarm", "Unavailable")]:
        assert (a[alarm]["Namespace"], a[alarm]["MetricName"]) == ("p2c", metric)
        assert f'"{metric}"' in src, f"the ingress emits {metric}"
        assert a[alarm]["Dimensions"] == [{"Name": "FunctionName", "Value": {"Fn::Sub": "${AWS::StackName}-events"}}]
    outputs = template["Outputs"]
    assert outputs["EventsUrl"]["Value"] == {"Fn::GetAtt": ["EventsFunctionUrl", "FunctionUrl"]}
    assert outputs["EventsOperatorPolicyArn"]["Value"] == {"Ref": "EventsOperatorPolicy"}


def test_visibility_is_at_least_six_function_timeouts(template):
    allowed = template["Parameters"]["FunctionTimeout"]["AllowedValues"]
    table = template["Mappings"]["Timeouts"]
    assert set(table) == set(allowed)
    for timeout, row in table.items():
        assert row["Visibility"] >= 6 * int(timeout), f"timeout {timeout}: visibility {row['Visibility']}"
        # A scheduled run must have time left to work before it stops for the deadline.
        assert 0 < row["DeadlineMargin"] <= int(timeout) // 4, f"timeout {timeout}: margin {row['DeadlineMargin']}"
    assert template["Globals"]["Function"]["Timeout"] == {"Ref": "FunctionTimeout"}


def test_table_matches_the_state_crate(template):
    store = (ROOT / "shared" / "state" / "src" / "store.rs").read_text()
    ttl = re.search(r'TTL_ATTRIBUTE: &str = "([^"]+)"', store).group(1)
    for k in ("pk", "sk"):
        assert f'key("{k}"' in store or f'.key("{k}"' in store, f"the state crate no longer keys on {k}"
    (table,) = resources(template, "AWS::DynamoDB::Table").values()
    p = table["Properties"]
    assert p["BillingMode"] == "PAY_PER_REQUEST"
    assert p["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]
    assert p["AttributeDefinitions"] == [
        {"AttributeName": "pk", "AttributeType": "S"},
        {"AttributeName": "sk", "AttributeType": "S"},
    ]
    assert p["TimeToLiveSpecification"] == {"AttributeName": ttl, "Enabled": True}
    assert p["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert p["SSESpecification"] == {"SSEEnabled": True}
    assert table["DeletionPolicy"] == "Retain"


def test_dashboard_body_is_json_and_covers_every_flow_by_prefix(template):
    body = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    subs = set(re.findall(r"\$\{([^}]+)\}", body))
    assert subs <= {"AWS::Region", "AWS::StackName"}, subs
    widgets = json.loads(body.replace("${AWS::Region}", "us-east-1").replace("${AWS::StackName}", "p2c"))["widgets"]
    exprs = [w["properties"]["metrics"][0][0]["expression"] for w in widgets]
    # Functions and queues are found by the "<stack>-" name prefix, so a new flow needs no dashboard change.
    assert any("{AWS/Lambda,FunctionName}" in e and '"p2c-"' in e for e in exprs)
    assert any("{AWS/SQS,QueueName}" in e and '"p2c-"' in e for e in exprs)
    # p2c metrics: this stack's only, with the dimensions the code prints.
    mine = [e for e in exprs if "{p2c," in e]
    assert mine and all("{p2c,Stack,Flow,Company}" in e and 'Stack="p2c"' in e for e in mine), mine


def test_translated_template_has_what_sam_generates(template):
    cfn = sam_to_cfn(template)
    fns = resources(cfn, "AWS::Lambda::Function")
    esms = resources(cfn, "AWS::Lambda::EventSourceMapping")
    assert len(esms) == len(flow_functions(template)), "one SQS trigger per flow"
    assert len(fns) == len(all_functions(template))
    # The events ingress: one public Function URL (it authenticates each call itself).
    (url,) = resources(cfn, "AWS::Lambda::Url").values()
    assert url["Properties"]["AuthType"] == "NONE"
    assert url["Properties"]["TargetFunctionArn"] == {"Ref": all_functions(template)[EVENTS_BINARY][0]}
    # Since October 2025 a new function URL needs both permissions (AWS Lambda guide, "Control access to Lambda
    # function URLs"); InvokeFunction only through the URL.
    perms = {p["Properties"]["Action"]: p["Properties"] for p in resources(cfn, "AWS::Lambda::Permission").values()}
    assert perms["lambda:InvokeFunctionUrl"]["FunctionUrlAuthType"] == "NONE"
    assert perms["lambda:InvokeFunction"]["InvokedViaFunctionUrl"] is True
    for esm in esms.values():
        assert esm["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    for lid, fn in fns.items():
        assert fn["Properties"]["Code"] == {"S3Bucket": "p2c-artifacts", "S3Key": "bootstrap.zip"}
        assert fn["Properties"]["LoggingConfig"]["LogFormat"] == "JSON"
    # SAM adds no roles of its own: every function uses the least-privilege role of its block.
    assert set(resources(cfn, "AWS::IAM::Role")) == set(resources(template, "AWS::IAM::Role"))


def test_translated_template_lints_clean(template):
    from cfnlint.api import lint

    matches = lint(json.dumps(sam_to_cfn(template)), regions=["us-east-1"])
    assert not matches, "\n".join(str(m) for m in matches)


def test_fifty_companies_fit_in_one_stack(raw):
    """CloudFormation allows 500 resources per stack, counted after the transforms; each company brings a schedule
    per flow and its lag alarm."""
    cfn = {n: sam_to_cfn(expanded(raw, sample_companies(n))) for n in (1, 2, 50)}
    count = {n: len(c["Resources"]) for n, c in cfn.items()}
    flows = len(workspace_binaries() - {EVENTS_BINARY})
    assert count[2] - count[1] == flows + 1
    assert count[50] <= 500, count
    # The processed template must stay under CloudFormation's 1 MB as well.
    assert len(json.dumps(cfn[50], separators=(",", ":"))) < 1_000_000
    most = 50 + (500 - count[50]) // (flows + 1)
    assert most < 60, f"a stack now holds {most} companies: raise the limit stated in the template and README"
    for doc in ("infra/template.yaml", "README.md"):
        assert re.search(r"50\s+(#\s+)?companies", (ROOT / doc).read_text()), f"{doc} states the limit"


def test_samconfig_builds_and_deploys_without_a_prompt():
    cfg = tomllib.loads((ROOT / "samconfig.toml").read_text())
    assert cfg["version"] == 0.1
    # SAM CLI expands the template's Fn::ForEach locally only when asked; without it sam build cannot read it.
    assert cfg["default"]["global"]["parameters"]["language_extensions"] is True
    build = cfg["default"]["build"]["parameters"]
    assert build["template_file"] == "infra/template.yaml"
    # Off, explicitly (overriding SAM_CLI_BETA_* in the environment): the rust-cargolambda build method left beta in
    # SAM CLI 1.156, and the versions that can expand this template (1.160+) build it without a question
    # (test_sam_build.py runs it with stdin closed). On, it would turn on SAM's other experiments.
    assert build["beta_features"] is False
    deploy = cfg["default"]["deploy"]["parameters"]
    assert deploy["confirm_changeset"] is False
    assert deploy["fail_on_empty_changeset"] is False
    assert deploy["resolve_s3"] is True
    # IAM for the roles, AUTO_EXPAND for the transforms (AWS::LanguageExtensions in particular).
    assert set(deploy["capabilities"].split()) == {"CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"}
    # Nothing tenant-specific is committed: parameters come from a file per environment (--parameter-overrides).
    assert "parameter_overrides" not in deploy and "parameter_overrides" not in build


def test_example_parameters_are_valid(raw):
    """infra/params.example.yaml, which README.md tells operators to copy: known parameters, valid values (the
    loader is cfn-lint's YAML reader, which is what is installed; the file is plain YAML)."""
    params = json.loads(json.dumps(cfn_yaml.loads((ROOT / "infra" / "params.example.yaml").read_text())))
    decl = raw["Parameters"]
    assert set(params) <= set(decl), set(params) - set(decl)
    required = {k for k, d in decl.items() if "Default" not in d}
    assert required <= set(params), required - set(params)
    for k, v in params.items():
        d = decl[k]
        values = v if isinstance(v, list) else [v]
        for x in values:
            if "AllowedPattern" in d:
                assert re.fullmatch(d["AllowedPattern"], str(x)), (k, x)
            if "AllowedValues" in d:
                assert str(x) in [str(a) for a in d["AllowedValues"]], (k, x)


# ------------------------------------------------------------------------------ (b) create in moto


PARAMS = {
    "SalesUrl": "https://contoso.crm.dynamics.com",
    "FnoUrl": "https://contoso.operations.dynamics.com",
    "TenantId": "contoso.onmicrosoft.com",
    "ClientId": "11111111-2222-3333-4444-555555555555",
    "Companies": ",".join(COMPANIES),
    "ReceiveLimit": "7",
    "FunctionTimeout": "120",
    "SqsBatchSize": "25",
    "MaxConcurrency": "3",
    "LogRetentionDays": "14",
    "MemorySize": "512",
    "ScheduleMinutes": "15",
    # moto's CloudFormation does not model AWS::SecretsManager::Secret, so the moto stack takes the
    # existing-secret branch; the created-secret branch is checked statically above.
    "ClientSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:p2c/entra-AbCdEf",
    "SecretKmsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/0b9cf0a4-63e2-4dd7-9a54-6a7c1c0e3f8d",
}
STACK = "p2c-ci"
# Types moto's CloudFormation does not model: it skips them with a warning and still completes the stack.
MOTO_SKIPS = {
    "AWS::Lambda::Url",
    "AWS::Scheduler::Schedule",
    "AWS::Scheduler::ScheduleGroup",
    "AWS::CloudWatch::Alarm",
    "AWS::Lambda::EventInvokeConfig",
    "AWS::SecretsManager::Secret",
    "AWS::CloudWatch::Dashboard",
}


@pytest.fixture(scope="module")
def moto():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    session = boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")

    def client(name):
        return session.client(name, endpoint_url=endpoint)

    yield client
    server.stop()


@pytest.fixture(scope="module")
def stack(moto, raw):
    s3 = moto("s3")
    s3.create_bucket(Bucket="p2c-artifacts")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("bootstrap", b"#!/bin/sh\nexit 1\n")
    s3.put_object(Bucket="p2c-artifacts", Key="bootstrap.zip", Body=buf.getvalue())

    # What CloudFormation does with the template: the language extensions with these parameters, then SAM.
    cfn = sam_to_cfn(expanded(raw, PARAMS["Companies"].split(",")))
    # moto validates GetAtt in outputs against the types it models: drop outputs of the types it skips (the events
    # function's URL), which are checked statically above.
    skipped_ids = {k for k, v in cfn["Resources"].items() if v["Type"] in MOTO_SKIPS}
    cfn["Outputs"] = {
        k: v
        for k, v in cfn.get("Outputs", {}).items()
        if not (isinstance(v["Value"], dict) and v["Value"].get("Fn::GetAtt", [None])[0] in skipped_ids)
    }
    # A managed policy statement on a resource moto does not model has no resource there, which moto's IAM refuses:
    # such statements (the events key's) are checked statically above.
    for r in resources(cfn, "AWS::IAM::ManagedPolicy").values():
        doc = r["Properties"]["PolicyDocument"]
        doc["Statement"] = [st for st in doc["Statement"] if st.get("Resource") not in [{"Ref": i} for i in skipped_ids]]
    cf = moto("cloudformation")
    # In process, so moto's warnings about the types it skips reach us; anything else it skips is a surprise.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cf.create_stack(
            StackName=STACK,
            TemplateBody=json.dumps(cfn),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in PARAMS.items()],
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
        )
    skipped = {m.group(1) for w in caught if (m := re.search(r"parse (AWS::\S+) but it's not supported", str(w.message)))}
    assert skipped <= MOTO_SKIPS, f"moto skipped unexpected resource types: {sorted(skipped - MOTO_SKIPS)}"
    desc = cf.describe_stacks(StackName=STACK)["Stacks"][0]
    assert desc["StackStatus"] == "CREATE_COMPLETE", desc
    return {r["LogicalResourceId"]: r for r in cf.list_stack_resources(StackName=STACK)["StackResourceSummaries"]}


def test_moto_stack_has_the_companies(moto, stack, raw, template):
    # The processed template moto created holds a schedule per flow and company and a lag alarm per company (moto
    # lists those without their names, as it does not model them), and every resource of the types it models.
    cfn = sam_to_cfn(expanded(raw, PARAMS["Companies"].split(",")))
    created = {k for k, r in cfn["Resources"].items() if r["Type"] not in MOTO_SKIPS and "Condition" not in r}
    assert created <= set(stack), sorted(created - set(stack))
    flows = flow_functions(template)
    schedules = [k for k, r in cfn["Resources"].items() if r["Type"] == "AWS::Scheduler::Schedule"]
    lag = [k for k in cfn["Resources"] if k.startswith("LagAlarm")]
    assert (len(schedules), len(lag)) == (5 * len(flows), 5)
    outputs = {
        o["OutputKey"]: o["OutputValue"]
        for o in moto("cloudformation").describe_stacks(StackName=STACK)["Stacks"][0]["Outputs"]
    }
    assert outputs["CliEnvironment"] == (
        f"P2C_STACK={STACK} P2C_TABLE={STACK} P2C_QUEUE_PREFIX={STACK}- P2C_COMPANIES='{PARAMS['Companies']}'"
    )


def test_moto_table(moto, stack):
    t = moto("dynamodb").describe_table(TableName=STACK)["Table"]
    assert t["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert t["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]
    assert sorted((a["AttributeName"], a["AttributeType"]) for a in t["AttributeDefinitions"]) == [
        ("pk", "S"),
        ("sk", "S"),
    ]


def test_moto_queues_functions_and_roles(moto, stack, template):
    sqs, lam, iam, logs = moto("sqs"), moto("lambda"), moto("iam"), moto("logs")
    table_arn = moto("dynamodb").describe_table(TableName=STACK)["Table"]["TableArn"]
    lambda_actions = {iam_action(f, op) for (f, _, op) in LAMBDA_CALLS}
    for binary in flow_functions(template):
        name = f"{STACK}-{binary}"
        # Queues: redrive to the DLQ after ReceiveLimit receives; visibility 6 x the function timeout.
        q_url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        d_url = sqs.get_queue_url(QueueName=f"{name}-dlq")["QueueUrl"]
        qa = sqs.get_queue_attributes(QueueUrl=q_url, AttributeNames=["All"])["Attributes"]
        da = sqs.get_queue_attributes(QueueUrl=d_url, AttributeNames=["All"])["Attributes"]
        redrive = json.loads(qa["RedrivePolicy"])
        assert int(redrive["maxReceiveCount"]) == int(PARAMS["ReceiveLimit"])
        assert redrive["deadLetterTargetArn"] == da["QueueArn"]
        assert int(qa["VisibilityTimeout"]) == 6 * int(PARAMS["FunctionTimeout"])
        assert int(da["MessageRetentionPeriod"]) == 14 * 24 * 3600

        # Function: runtime, memory, timeout, and the configuration it reads. (moto's CloudFormation ignores
        # Architectures; test_functions_are_built_by_cargo_lambda_for_al2023 checks it in the template.)
        cfg = lam.get_function(FunctionName=name)["Configuration"]
        assert (cfg["Runtime"], cfg["Handler"]) == ("provided.al2023", "bootstrap")
        assert (cfg["Timeout"], cfg["MemorySize"]) == (int(PARAMS["FunctionTimeout"]), int(PARAMS["MemorySize"]))
        env = cfg["Environment"]["Variables"]
        # moto's CloudFormation renders queue URLs in the AWS form, its SQS API in the endpoint's: compare paths.
        assert urlparse(env["P2C_QUEUE_URL"]).path == urlparse(q_url).path
        assert urlparse(env["P2C_DLQ_URL"]).path == urlparse(d_url).path
        assert env["P2C_TABLE"] == STACK and env["P2C_STACK"] == STACK
        assert env["P2C_COMPANIES"] == PARAMS["Companies"]
        assert env["P2C_SALES_URL"] == PARAMS["SalesUrl"] and env["P2C_FNO_URL"] == PARAMS["FnoUrl"]
        assert env["P2C_AUTHORITY_URL"] == "https://login.microsoftonline.com"
        assert env["P2C_CLIENT_SECRET_ARN"] == PARAMS["ClientSecretArn"]
        assert "P2C_CLIENT_SECRET" not in env

        # SQS trigger with partial batch responses.
        (esm,) = lam.list_event_source_mappings(FunctionName=name)["EventSourceMappings"]
        assert esm["EventSourceArn"] == qa["QueueArn"]
        assert esm["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert esm["BatchSize"] == int(PARAMS["SqsBatchSize"])

        # Role: inline policies name this flow's queues, the table, the secret and its key; no wildcard resource.
        role_name = cfg["Role"].rsplit("/", 1)[1]
        role = iam.get_role(RoleName=role_name)["Role"]
        trust = role["AssumeRolePolicyDocument"]
        trust = json.loads(trust) if isinstance(trust, str) else trust
        assert trust["Statement"][0]["Principal"] == {"Service": "lambda.amazonaws.com"}
        granted: dict[str, set[str]] = {}
        for pol in iam.list_role_policies(RoleName=role_name)["PolicyNames"]:
            doc = iam.get_role_policy(RoleName=role_name, PolicyName=pol)["PolicyDocument"]
            doc = policy_document(doc)
            for st in doc["Statement"]:
                for r in as_list(st["Resource"]):
                    assert r != "*", f"{role_name}/{pol}: wildcard resource"
                    granted.setdefault(r, set()).update(as_list(st["Action"]))
        assert granted[table_arn] == {a for a in lambda_actions if a.startswith("dynamodb:")}
        assert granted[qa["QueueArn"]] == SQS_POLLER_ACTIONS | {"sqs:SendMessage"}
        assert granted[da["QueueArn"]] == {"sqs:SendMessage"}
        assert granted[PARAMS["ClientSecretArn"]] == {"secretsmanager:GetSecretValue"}
        assert granted[PARAMS["SecretKmsKeyArn"]] == {"kms:Decrypt"}
        assert not iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]

        # Log group with the configured retention.
        (lg,) = logs.describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{name}")["logGroups"]
        assert lg["retentionInDays"] == int(PARAMS["LogRetentionDays"])


def test_moto_operator_policy(moto, stack):
    iam = moto("iam")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in moto("cloudformation").describe_stacks(StackName=STACK)[
        "Stacks"][0]["Outputs"]}
    arn = outputs["OperatorPolicyArn"]
    version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
    doc = policy_document(iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"])
    by_sid = {s["Sid"]: s for s in doc["Statement"]}
    assert set(by_sid) == {"State", "Queues", "Secret", "SecretKey", "ListSchedules", "PauseResume", "PassSchedulerRoles"}
    # moto does not model the schedule group, so its name stays unresolved here; CloudFormation puts the stack name.
    assert by_sid["PauseResume"]["Resource"].rsplit(":", 1)[1] in (f"schedule/{STACK}/*", "schedule/${ScheduleGroup}/*")
    assert len(by_sid["Queues"]["Resource"]) == 2 * len(workspace_binaries() - {EVENTS_BINARY})


def test_moto_events_function(moto, stack, template):
    sqs, lam, iam = moto("sqs"), moto("lambda"), moto("iam")
    cfg = lam.get_function(FunctionName=f"{STACK}-events")["Configuration"]
    env = cfg["Environment"]["Variables"]
    # One queue URL per flow, each the flow's queue (not its DLQ).
    pairs = dict(e.split("=", 1) for e in env["P2C_EVENT_QUEUES"].split(","))
    assert sorted(pairs) == sorted(flow_functions(template))
    for flow, url in pairs.items():
        real = sqs.get_queue_url(QueueName=f"{STACK}-{flow}")["QueueUrl"]
        assert urlparse(url).path == urlparse(real).path, flow
    # P2C_EVENTS_SECRET_ARN names the generated secret, which moto does not model (checked statically above).
    assert "P2C_EVENTS_SECRET" not in env
    role_name = cfg["Role"].rsplit("/", 1)[1]
    granted: dict[str, set[str]] = {}
    for pol in iam.list_role_policies(RoleName=role_name)["PolicyNames"]:
        doc = policy_document(iam.get_role_policy(RoleName=role_name, PolicyName=pol)["PolicyDocument"])
        for st in doc["Statement"]:
            # The key's statement names the generated secret, unresolved in moto (checked statically).
            for r in as_list(st.get("Resource", [])):
                assert r != "*", f"{role_name}/{pol}: wildcard resource"
                granted.setdefault(r, set()).update(as_list(st["Action"]))
    queue_arns = set()
    for f in flow_functions(template):
        url = sqs.get_queue_url(QueueName=f"{STACK}-{f}")["QueueUrl"]
        queue_arns.add(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"])
    sends = {r for r, a in granted.items() if "sqs:SendMessage" in a}
    assert sends == queue_arns, "the ingress sends to the flows' queues and nothing else"
    assert not any(a & {"dynamodb:GetItem", "sqs:ReceiveMessage"} for a in granted.values())
