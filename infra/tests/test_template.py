"""Checks that infra/template.yaml agrees with the code, and that it deploys.

(a) Static agreement: every Lambda binary under functions/ has a flow block in the template and every flow block
    builds a binary that exists; every P2C_* variable the Lambda code reads is set on every function (and nothing
    else is); each flow block wires its own queue, DLQ, log group, role, schedules and alarms; the table matches the
    state crate's key layout.
(b) Deployment: SAM is translated to CloudFormation offline with samtranslator and created in a moto_server
    started here on a free port; the resources moto models (table, queues, functions, roles, event source
    mappings, log groups) are read back and checked.

Run with `infra/check` (which installs the pinned tools), or `python3 -m pytest infra/tests`.
"""

from __future__ import annotations

import ast
import copy
import io
import json
import re
import tomllib
import warnings
import zipfile
from pathlib import Path
from urllib.parse import urlparse

import boto3
import pytest
from cfnlint.decode import cfn_yaml

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
}
# Set in each flow block (they differ per function); the rest come from Globals.
PER_FUNCTION_ENV = {"P2C_QUEUE_URL", "P2C_DLQ_URL"}
TABLE_ACTIONS = {
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:Query",
    "dynamodb:BatchGetItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:DescribeTable",
}
SECRET_ARN = {"Fn::If": ["CreateSecret", {"Ref": "ClientSecret"}, {"Ref": "ClientSecretArn"}]}


# moto's warnings about resource types it skips are checked in the `stack` fixture, not repeated in the summary.
pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS::")

# ----------------------------------------------------------------------------------------------- helpers


def load_template() -> dict:
    # cfn-lint's loader understands the short intrinsic tags (!Ref, !Sub, ...) and yields plain dicts.
    return json.loads(json.dumps(cfn_yaml.loads(TEMPLATE_PATH.read_text())))


def resources(t: dict, rtype: str) -> dict[str, dict]:
    return {k: v for k, v in t["Resources"].items() if v["Type"] == rtype}


def prefix_of(binary: str) -> str:
    """accounts-to-fno -> AccountsToFno: the logical-id prefix of a flow block."""
    return "".join(p.capitalize() for p in binary.split("-"))


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


def code_env_vars() -> set[str]:
    """P2C_* names the Lambda code reads: string literals in shared/*/src and functions/*/src, unit tests excluded."""
    names: set[str] = set()
    for src in sorted([*ROOT.glob("shared/*/src/**/*.rs"), *ROOT.glob("functions/*/src/**/*.rs")]):
        text = src.read_text()
        # Unit tests sit at the end of a file behind #[cfg(test)]; their fake variables are not configuration.
        text = text.split("#[cfg(test)]", 1)[0]
        names.update(re.findall(r'"(P2C_[A-Z0-9_]+)"', text))
    return names


def flow_functions(t: dict) -> dict[str, tuple[str, dict]]:
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
            out.append(st)
    return out


def as_list(x) -> list:
    return x if isinstance(x, list) else [x]


def policy_document(doc) -> dict:
    """A policy as IAM returns it: a dict (boto3 decodes JSON), a JSON string, or - for inline policies moto
    created through CloudFormation - a Python repr of the dict."""
    if isinstance(doc, dict):
        return doc
    try:
        return json.loads(doc)
    except json.JSONDecodeError:
        return ast.literal_eval(doc)


# ------------------------------------------------------------------------------------- (a) agreement


@pytest.fixture(scope="module")
def template() -> dict:
    return load_template()


def test_every_binary_has_a_function_and_every_function_a_binary(template):
    in_template = set(flow_functions(template))
    in_workspace = workspace_binaries()
    assert in_workspace, "no binaries found under functions/"
    missing = in_workspace - in_template
    assert not missing, f"binaries without a flow block in infra/template.yaml: {sorted(missing)}"
    extra = in_template - in_workspace
    assert not extra, f"template functions whose binary is not under functions/: {sorted(extra)}"


def test_functions_are_built_by_cargo_lambda_for_al2023(template):
    g = template["Globals"]["Function"]
    assert (g["Runtime"], g["Handler"], g["Architectures"]) == ("provided.al2023", "bootstrap", ["x86_64"])
    assert g["CodeUri"] == "../", "CodeUri must be the workspace root (where target/ lives)"
    for binary, (lid, fn) in flow_functions(template).items():
        assert fn["Metadata"]["BuildMethod"] == "rust-cargolambda", lid
        for key in ("Runtime", "Handler", "Architectures", "CodeUri", "Timeout"):
            assert key not in fn["Properties"], f"{lid} overrides Globals.{key}"


def test_env_vars_agree_with_the_code(template):
    read = code_env_vars()
    for name in {**CLI_ONLY, **OPTIONAL}:
        assert name in read, f"{name} is listed here but the code no longer reads it; drop it from the list"
    wanted = read - set(CLI_ONLY) - set(OPTIONAL)
    assert PER_FUNCTION_ENV <= wanted, "the code no longer reads the per-function queue URLs"
    cfn = sam_to_cfn(template)
    for lid, fn in resources(cfn, "AWS::Lambda::Function").items():
        env = set(fn["Properties"].get("Environment", {}).get("Variables", {}))
        p2c = {v for v in env if v.startswith("P2C_")}
        assert not (wanted - p2c), f"{lid} lacks {sorted(wanted - p2c)} (read by the code)"
        assert not (p2c - read), f"{lid} sets {sorted(p2c - read)}, which no code reads"
        assert not (p2c & set(CLI_ONLY)), f"{lid} sets CLI-only {sorted(p2c & set(CLI_ONLY))}"


def test_flow_blocks_are_self_consistent(template):
    text = TEMPLATE_PATH.read_text()
    res = template["Resources"]
    for binary, (lid, fn) in flow_functions(template).items():
        p = prefix_of(binary)
        assert lid == f"{p}Function", f"{lid}: a flow block's function is named <Prefix>Function ({p}Function)"
        # The block is delimited, and holds every resource with its prefix.
        begin, end = f"BEGIN FLOW {binary}\n", f"END FLOW {binary}\n"
        assert text.count(begin) == 1 and text.count(end) == 1, f"markers of flow {binary}"
        block = text[text.index(begin) : text.index(end)]
        mine = [k for k in res if k.startswith(p)]
        for k in mine:
            assert f"\n  {k}:\n" in block, f"{k} is outside the BEGIN/END FLOW {binary} block"
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

        # Logs: JSON into its own log group with retention.
        assert props["LoggingConfig"]["LogFormat"] == "JSON"
        assert props["LoggingConfig"]["LogGroup"] == {"Ref": lg}
        assert res[lg]["Properties"] == {
            "LogGroupName": {"Fn::Sub": f"/aws/lambda/${{AWS::StackName}}-{binary}"},
            "RetentionInDays": {"Ref": "LogRetentionDays"},
        }

        # Role: only this flow's queue/DLQ/log group, the table and the secret; nothing is "*".
        assert props["Role"] == {"Fn::GetAtt": [role, "Arn"]}
        allowed = {
            json.dumps(x, sort_keys=True)
            for x in [
                {"Fn::GetAtt": [q, "Arn"]},
                {"Fn::GetAtt": [d, "Arn"]},
                {"Fn::GetAtt": [lg, "Arn"]},
                {"Fn::GetAtt": ["StateTable", "Arn"]},
                SECRET_ARN,
            ]
        }
        actions_by_resource: dict[str, set[str]] = {}
        for st in statements(res[role]):
            assert st["Effect"] == "Allow"
            for r in as_list(st["Resource"]):
                key = json.dumps(r, sort_keys=True)
                assert key in allowed, f"{role} grants on {r}"
                actions_by_resource.setdefault(key, set()).update(as_list(st["Action"]))
            assert "*" not in json.dumps(st["Action"]), f"{role}: wildcard action {st['Action']}"
        k = lambda x: json.dumps(x, sort_keys=True)  # noqa: E731
        assert actions_by_resource[k({"Fn::GetAtt": ["StateTable", "Arn"]})] == TABLE_ACTIONS
        assert actions_by_resource[k(SECRET_ARN)] == {"secretsmanager:GetSecretValue"}
        assert actions_by_resource[k({"Fn::GetAtt": [d, "Arn"]})] == {"sqs:SendMessage"}
        assert {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:SendMessage"} <= (
            actions_by_resource[k({"Fn::GetAtt": [q, "Arn"]})]
        )
        assert actions_by_resource[k({"Fn::GetAtt": [lg, "Arn"]})] == {"logs:CreateLogStream", "logs:PutLogEvents"}

        # Schedules: one per company slot, each with this flow's name in its Input, invoking only this function.
        schedules = {
            k: v
            for k, v in resources(template, "AWS::Scheduler::Schedule").items()
            if v["Properties"]["Target"]["Arn"] == {"Fn::GetAtt": [lid, "Arn"]}
        }
        assert set(schedules) == {f"{p}ScheduleA", f"{p}ScheduleB"}, f"schedules of {lid}: {sorted(schedules)}"
        assert "Condition" not in schedules[f"{p}ScheduleA"]
        assert schedules[f"{p}ScheduleB"]["Condition"] == "HasCompanyB"
        for slot in "AB":
            sp = schedules[f"{p}Schedule{slot}"]["Properties"]
            assert sp["ScheduleExpression"] == {"Ref": "ScheduleRate"}
            assert sp["Target"]["RoleArn"] == {"Fn::GetAtt": [f"{p}SchedulerRole", "Arn"]}
            raw = sp["Target"]["Input"]["Fn::Sub"]
            got = json.loads(raw.replace(f"${{Company{slot}}}", "usmf"))
            assert got == {"flow": binary, "company": "usmf"}, f"{p}Schedule{slot} Input: {raw}"
        sched_role = res[f"{p}SchedulerRole"]
        assert [s["Resource"] for s in statements(sched_role)] == [{"Fn::GetAtt": [lid, "Arn"]}]
        assert [s["Action"] for s in statements(sched_role)] == ["lambda:InvokeFunction"]

        # Alarms: DLQ depth, function errors, age of the oldest queued message.
        alarms = {
            (a["Properties"]["Namespace"], a["Properties"]["MetricName"]): a["Properties"]
            for a in resources(template, "AWS::CloudWatch::Alarm").values()
            if any(
                dim["Value"] in ({"Ref": lid}, {"Fn::GetAtt": [q, "QueueName"]}, {"Fn::GetAtt": [d, "QueueName"]})
                for dim in a["Properties"]["Dimensions"]
            )
        }
        dlq = alarms[("AWS/SQS", "ApproximateNumberOfMessagesVisible")]
        assert dlq["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [d, "QueueName"]}}]
        assert (dlq["Threshold"], dlq["ComparisonOperator"]) == (0, "GreaterThanThreshold")
        errs = alarms[("AWS/Lambda", "Errors")]
        assert errs["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": lid}}]
        age = alarms[("AWS/SQS", "ApproximateAgeOfOldestMessage")]
        assert age["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [q, "QueueName"]}}]


def test_visibility_is_at_least_six_function_timeouts(template):
    allowed = template["Parameters"]["FunctionTimeout"]["AllowedValues"]
    table = template["Mappings"]["Timeouts"]
    assert set(table) == set(allowed)
    for timeout, row in table.items():
        assert row["Visibility"] >= 6 * int(timeout), f"timeout {timeout}: visibility {row['Visibility']}"
    assert template["Globals"]["Function"]["Timeout"] == {"Ref": "FunctionTimeout"}


def test_table_matches_the_state_crate(template):
    store = (ROOT / "shared" / "state" / "src" / "store.rs").read_text()
    ttl = re.search(r'TTL_ATTRIBUTE: &str = "([^"]+)"', store).group(1)
    for key in ("pk", "sk"):
        assert f'key("{key}"' in store or f'.key("{key}"' in store, f"the state crate no longer keys on {key}"
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


def test_translated_template_has_what_sam_generates(template):
    cfn = sam_to_cfn(template)
    fns = resources(cfn, "AWS::Lambda::Function")
    esms = resources(cfn, "AWS::Lambda::EventSourceMapping")
    assert len(esms) == len(fns) == len(flow_functions(template))
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


# ------------------------------------------------------------------------------ (b) create in moto


PARAMS = {
    "SalesUrl": "https://contoso.crm.dynamics.com",
    "FnoUrl": "https://contoso.operations.dynamics.com",
    "TenantId": "contoso.onmicrosoft.com",
    "ClientId": "11111111-2222-3333-4444-555555555555",
    "CompanyA": "usmf",
    "BusinessUnitA": "US Sales",
    "CompanyB": "usrt",
    "BusinessUnitB": "0b9cf0a4-63e2-4dd7-9a54-6a7c1c0e3f8d",
    "ReceiveLimit": "7",
    "FunctionTimeout": "120",
    "SqsBatchSize": "25",
    "MaxConcurrency": "3",
    "LogRetentionDays": "14",
    # moto's CloudFormation does not model AWS::SecretsManager::Secret, so the moto stack takes the
    # existing-secret branch; the created-secret branch is checked statically above.
    "ClientSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:p2c/entra-AbCdEf",
}
STACK = "p2c-ci"
# Types moto's CloudFormation does not model: it skips them with a warning and still completes the stack.
MOTO_SKIPS = {
    "AWS::Scheduler::Schedule",
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
def stack(moto, template):
    s3 = moto("s3")
    s3.create_bucket(Bucket="p2c-artifacts")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("bootstrap", b"#!/bin/sh\nexit 1\n")
    s3.put_object(Bucket="p2c-artifacts", Key="bootstrap.zip", Body=buf.getvalue())

    cfn = sam_to_cfn(template)
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

        # Function: runtime, timeout, and the configuration it reads.
        cfg = lam.get_function(FunctionName=name)["Configuration"]
        assert (cfg["Runtime"], cfg["Handler"], cfg["Architectures"]) == ("provided.al2023", "bootstrap", ["x86_64"])
        assert cfg["Timeout"] == int(PARAMS["FunctionTimeout"])
        env = cfg["Environment"]["Variables"]
        # moto's CloudFormation renders queue URLs in the AWS form, its SQS API in the endpoint's: compare paths.
        assert urlparse(env["P2C_QUEUE_URL"]).path == urlparse(q_url).path
        assert urlparse(env["P2C_DLQ_URL"]).path == urlparse(d_url).path
        assert env["P2C_TABLE"] == STACK
        assert env["P2C_COMPANIES"] == "usmf=US Sales,usrt=0b9cf0a4-63e2-4dd7-9a54-6a7c1c0e3f8d"
        assert env["P2C_SALES_URL"] == PARAMS["SalesUrl"] and env["P2C_FNO_URL"] == PARAMS["FnoUrl"]
        assert env["P2C_AUTHORITY_URL"] == "https://login.microsoftonline.com"
        assert env["P2C_CLIENT_SECRET_ARN"] == PARAMS["ClientSecretArn"]
        assert "P2C_CLIENT_SECRET" not in env

        # SQS trigger with partial batch responses.
        (esm,) = lam.list_event_source_mappings(FunctionName=name)["EventSourceMappings"]
        assert esm["EventSourceArn"] == qa["QueueArn"]
        assert esm["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert esm["BatchSize"] == int(PARAMS["SqsBatchSize"])

        # Role: inline policies name this flow's queues and the table, no wildcard resource.
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
        assert granted[table_arn] == TABLE_ACTIONS
        assert {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:SendMessage"} <= granted[qa["QueueArn"]]
        assert granted[da["QueueArn"]] == {"sqs:SendMessage"}
        assert granted[PARAMS["ClientSecretArn"]] == {"secretsmanager:GetSecretValue"}
        assert not iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]

        # Log group with the configured retention.
        (lg,) = logs.describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{name}")["logGroups"]
        assert lg["retentionInDays"] == int(PARAMS["LogRetentionDays"])
