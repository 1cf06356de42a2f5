"""The stack `sam local start-lambda` serves the function on, and `sam local start-api` the
SCIM endpoint, as a user's integration suite would set them up: moto (SQS, DynamoDB, Secrets
Manager) with one dead-letter queue per failure class, the source queue and the endpoint's
token secret, the Connect emulator seeded with the demo contact centre, and SAM on the built
template in the provided.al2023 stand-in image. scripts/sam-local sets the variables below."""

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

ROOT = Path(__file__).resolve().parents[2]
FUNCTION = "ConnectIdentitySyncFunction"
SCIM_FUNCTION = "ScimFunction"
# The bearer token the identity provider would be given; it lives in moto's Secrets Manager.
SCIM_TOKEN = "sam-local-scim-token-0f3c9a"
INSTANCE = "11111111-2222-3333-4444-555555555555"
CLASSES = {
    "MalformedEvent": "DLQ_URL_MALFORMED_EVENT",
    "ValidationError": "DLQ_URL_VALIDATION_ERROR",
    "PolicyViolation": "DLQ_URL_POLICY_VIOLATION",
    "InvalidRequestException": "DLQ_URL_INVALID_REQUEST",
    "InvalidParameterException": "DLQ_URL_INVALID_PARAMETER",
    "ResourceNotFoundException": "DLQ_URL_RESOURCE_NOT_FOUND",
    "ThrottlingException": "DLQ_URL_THROTTLING",
    "InternalServiceException": "DLQ_URL_INTERNAL_SERVICE",
    "UnknownError": "DLQ_URL_UNKNOWN",
}
DUMMY_AWS = {
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "start-lambda-dummy-secret",
    "AWS_EC2_METADATA_DISABLED": "true",
    "SAM_CLI_TELEMETRY": "0",
}


def need(var):
    value = os.environ.get(var)
    if not value:
        pytest.fail(f"{var} is not set: run tests/sam through scripts/sam-local (make sam-local)")
    return value


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, proc, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    pytest.fail(f"{what} did not listen on {port} within {seconds}s")


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def kebab(name):
    return "".join(("-" + c.lower()) if c.isupper() and i else c.lower() for i, c in enumerate(name))


class Emulator:
    def __init__(self, url):
        self.url = url

    def get(self, path):
        with urllib.request.urlopen(f"{self.url}/_emulator/{path}", timeout=10) as r:
            return json.load(r)

    def journal(self):
        return self.get("journal")

    def user(self, user_id):
        return self.get(f"users/{INSTANCE}/{user_id}")


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("start-lambda")
    procs = []
    try:
        moto_port = free_port()
        moto = subprocess.Popen(
            [need("MOTO_SERVER"), "-H", "127.0.0.1", "-p", str(moto_port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(moto)
        wait_for_port(moto_port, moto, 30, "moto")
        sqs_url = f"http://127.0.0.1:{moto_port}"

        emu_port = free_port()
        emulator = subprocess.Popen(
            [need("CONNECT_EMULATOR"), "--listen", f"127.0.0.1:{emu_port}",
             "--seed", str(ROOT / "demo/contact-centre.json"), "--quiet"],
            stdout=subprocess.DEVNULL)
        procs.append(emulator)
        wait_for_port(emu_port, emulator, 30, "the Connect emulator")
        connect_url = f"http://127.0.0.1:{emu_port}"

        sqs = boto3.client("sqs", endpoint_url=sqs_url, region_name="us-east-1",
                           aws_access_key_id="x", aws_secret_access_key="x")
        dlqs = {c: sqs.create_queue(QueueName=f"dlq-{kebab(c)}")["QueueUrl"] for c in CLASSES}
        # The watermark table the template's function guards its updates with, in moto.
        dynamodb = boto3.client("dynamodb", endpoint_url=sqs_url, region_name="us-east-1",
                                aws_access_key_id="x", aws_secret_access_key="x")
        dynamodb.create_table(TableName="identity-watermarks", BillingMode="PAY_PER_REQUEST",
                              AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                              KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
        env = {"AWS_ENDPOINT_URL_CONNECT": connect_url, "AWS_ENDPOINT_URL_SQS": sqs_url,
               "AWS_ENDPOINT_URL_DYNAMODB": sqs_url, "WATERMARK_TABLE": "identity-watermarks"}
        env.update({CLASSES[c]: url for c, url in dlqs.items()})
        # The SCIM endpoint: its token secret and the function's source queue, in moto. The
        # secret's ARN and the queue's URL exist only once moto has made them, as the
        # dead-letter queues' URLs, so they are given here and not as template parameters.
        source_queue = sqs.create_queue(QueueName="identity-changes")["QueueUrl"]
        secrets = boto3.client("secretsmanager", endpoint_url=sqs_url, region_name="us-east-1",
                               aws_access_key_id="x", aws_secret_access_key="x")
        secret_arn = secrets.create_secret(
            Name="connect-identity-sync/scim-tokens",
            SecretString=json.dumps({"tokens": [SCIM_TOKEN]}))["ARN"]
        scim_env = {"AWS_ENDPOINT_URL_CONNECT": connect_url, "AWS_ENDPOINT_URL_SQS": sqs_url,
                    "AWS_ENDPOINT_URL_SECRETS_MANAGER": sqs_url,
                    "SOURCE_QUEUE_URL": source_queue, "SCIM_TOKEN_SECRET_ARN": secret_arn}
        env_vars = tmp / "env-vars.json"
        env_vars.write_text(json.dumps({FUNCTION: env, SCIM_FUNCTION: scim_env}))

        lambda_port = free_port()
        log = open(tmp / "start-lambda.log", "w")
        sam = start_sam("start-lambda", env_vars, lambda_port, log)
        procs.append(sam)
        wait_for_port(lambda_port, sam, 120, "sam local start-lambda")

        client = boto3.client(
            "lambda", endpoint_url=f"http://127.0.0.1:{lambda_port}", region_name="us-east-1",
            aws_access_key_id="x", aws_secret_access_key="x",
            config=Config(read_timeout=180, retries={"max_attempts": 1}))
        yield {"lambda": client, "sqs": sqs, "dlqs": dlqs, "emulator": Emulator(connect_url),
               "log": tmp / "start-lambda.log", "env_vars": env_vars, "tmp": tmp,
               "source_queue": source_queue}
    finally:
        for p in reversed(procs):
            stop(p)


def start_sam(command, env_vars, port, log, *extra):
    """`sam local COMMAND` on the built template, in the stand-in image, on the host's
    network, with only what SAM itself needs in its environment: a shell variable would
    override the template's own."""
    sam_env = {k: os.environ[k] for k in ("PATH", "HOME", "TMPDIR", "DOCKER_HOST") if k in os.environ}
    sam_env.update(DUMMY_AWS)
    return subprocess.Popen(
        need("SAM_COMMAND").split() + [
            "local", command, "--template", need("SAM_TEMPLATE"),
            "--invoke-image", need("SAM_IMAGE"), "--skip-pull-image",
            "--docker-network", "host", "--env-vars", str(env_vars),
            "--host", "127.0.0.1", "--port", str(port),
            "--parameter-overrides", *need("SAM_PARAMETERS").split(), *extra],
        env=sam_env, stdout=log, stderr=subprocess.STDOUT)


class Api:
    """The SCIM endpoint as `sam local start-api` serves it: plain HTTP on loopback (API
    Gateway's TLS is not emulated), the identity provider's bearer token on every request."""

    def __init__(self, url, log):
        self.url = url
        self.log = log

    def request(self, method, path, body=None, token=SCIM_TOKEN):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        req.add_header("Authorization", f"Bearer {token}")
        req.add_header("Accept", "application/scim+json")
        if data is not None:
            req.add_header("Content-Type", "application/scim+json")
        try:
            with urllib.request.urlopen(req, timeout=180) as r:
                status, text = r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read().decode()
        return status, (json.loads(text) if text.strip() else None)


@pytest.fixture(scope="session")
def scim(stack):
    """`sam local start-api` serving the template's HTTP API: the ScimFunction behind
    /scim/v2/{proxy+}, payload format 2.0. One warm container answers every request (as
    Lambda keeps one), so the token secret is read once, at its start."""
    port = free_port()
    log_path = stack["tmp"] / "start-api.log"
    log = open(log_path, "w")
    sam = start_sam("start-api", stack["env_vars"], port, log, "--warm-containers", "LAZY")
    try:
        wait_for_port(port, sam, 120, "sam local start-api")
        yield Api(f"http://127.0.0.1:{port}/scim/v2", log_path)
    finally:
        stop(sam)
