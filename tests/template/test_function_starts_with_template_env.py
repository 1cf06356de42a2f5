"""The environment template.yaml gives the function is one the function starts with.

The function refuses to start on invalid configuration (SPEC section 6) by posting to the
Runtime API's /init/error. These tests resolve the template's Environment.Variables with
parameter values, start the host build of the binary against a stand-in Runtime API on
loopback, and expect it to ask for its first invocation instead. No AWS endpoint is
contacted: the SDK endpoints point at a closed loopback port.

The binary comes from CONNECT_SYNC_BINARY, else target/{debug,release}; .ci/lint-template
builds it. Without one, the tests are skipped.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import checks

INSTANCE = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"


def binary() -> Path | None:
    if os.environ.get("CONNECT_SYNC_BINARY"):
        return Path(os.environ["CONNECT_SYNC_BINARY"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", checks.REPO / "target"))
    for profile in ("debug", "release"):
        path = target / profile / "connect-identity-sync"
        if path.is_file():
            return path
    return None


def host_ca_bundle() -> str:
    for path in (checks.AL2023_CA_BUNDLE, "/etc/ssl/certs/ca-certificates.crt", "/etc/ssl/cert.pem"):
        if Path(path).is_file():
            return path
    pytest.skip("no CA bundle on this host")


def evaluate(t: dict, params: dict, node):
    """The value CloudFormation would give node, for the intrinsics the environment uses."""
    if isinstance(node, (str, int, float)):
        return str(node)
    assert isinstance(node, dict) and len(node) == 1, f"cannot evaluate {node!r}"
    (fn, arg), = node.items()
    if fn == "Ref":
        if arg in t.get("Parameters", {}):
            return str(params[arg])
        res = t["Resources"][arg]
        if res["Type"] == "AWS::SQS::Queue":
            return f"http://127.0.0.1:9/000000000000/{arg}"
        if res["Type"] == "AWS::DynamoDB::Table":
            return arg
        raise AssertionError(f"no value for Ref {arg}")
    if fn == "Fn::Sub" and isinstance(arg, str):
        return re.sub(r"\$\{(\w+)\}", lambda m: str(params[m.group(1)]), arg)
    if fn == "Fn::If":
        cond, yes, no = arg
        return evaluate(t, params, yes if condition(t, params, cond) else no)
    raise AssertionError(f"intrinsic {fn} in the environment: teach this test its value")


def condition(t: dict, params: dict, name: str) -> bool:
    def ev(node):
        (fn, arg), = node.items()
        if fn == "Fn::Not":
            return not ev(arg[0])
        if fn == "Fn::Equals":
            return evaluate(t, params, arg[0]) == evaluate(t, params, arg[1])
        if fn == "Condition":
            return ev(t["Conditions"][arg])
        raise AssertionError(f"condition function {fn}")

    return ev(t["Conditions"][name])


def template_env(t: dict, overrides: dict) -> dict:
    params = {k: v.get("Default") for k, v in t["Parameters"].items()}
    params["ConnectInstanceId"] = INSTANCE
    params.update(overrides)
    return {k: evaluate(t, params, v) for k, v in checks.function_env(t).items()}


class RuntimeApi:
    """Just enough of the Lambda Runtime API to see how the function starts."""

    def __init__(self):
        self.calls: list[str] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _record(self):
                api.calls.append(f"{self.command} {self.path}")

            def do_GET(self):
                self._record()
                # Hold the long poll: the function has started and is waiting for work.
                time.sleep(5)
                self.send_response(503)
                self.end_headers()

            def do_POST(self):
                self._record()
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                self.send_response(202)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"status":"OK"}')

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def start(env_vars: dict) -> tuple[list[str], str]:
    """Runs the binary until it asks for an invocation or reports an init error."""
    path = binary()
    if path is None:
        pytest.skip("no host build of connect-identity-sync (cargo build --bin connect-identity-sync)")
    api = RuntimeApi()
    if env_vars.get("SSL_CERT_FILE") == checks.AL2023_CA_BUNDLE and not Path(checks.AL2023_CA_BUNDLE).is_file():
        # The image's bundle is not on this build host; the function refuses a bundle
        # path that is not a file, so stand in the host's own bundle.
        env_vars = {**env_vars, "SSL_CERT_FILE": host_ca_bundle()}
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AWS_LAMBDA_RUNTIME_API": api.address,
        "AWS_LAMBDA_FUNCTION_NAME": "connect-identity-sync",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/connect-identity-sync",
        "AWS_LAMBDA_LOG_STREAM_NAME": "test",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "template-test",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_EC2_METADATA_DISABLED": "true",
        **env_vars,
    }
    proc = subprocess.Popen([str(path)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None:
            if any("/invocation/next" in c or "/init/error" in c for c in api.calls):
                break
            time.sleep(0.05)
    finally:
        proc.kill()
        output = proc.communicate()[0].decode(errors="replace")
        api.close()
    return api.calls, output


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {
            "EmailDomainAllowlist": "example.com,corp.example.com",
            "ProtectedSecurityProfileIds": "a1b2c3d4-0000-4000-8000-000000000001,a1b2c3d4-0000-4000-8000-000000000002",
            "TrustedSources": "com.okta.identity,com.example.idp",
            "DefaultPhoneRegion": "GB",
            "ConnectQuotaUpdate": 0.8,
            "MaximumConcurrency": 5,
        },
        {"EmailDomainAllowlist": "*"},
        # The smallest shares the template allows: every rate a fraction of a request a second.
        # The read quotas are shared with the SCIM endpoint's containers as well.
        {
            "MaximumConcurrency": 50,
            "ScimMaximumConcurrency": 10,
            "ConnectQuotaUpdate": 0.5,
            "ConnectQuotaDescribe": 0.6,
            "ConnectQuotaSearch": 0.6,
            "ConnectQuotaList": 0.6,
        },
    ],
    ids=["defaults", "rules-opened", "any-email-domain", "fifty-containers-smallest-quotas"],
)
def test_function_starts_with_the_environment_the_template_gives_it(template, overrides):
    calls, output = start(template_env(template, overrides))
    assert not any("/init/error" in c for c in calls), f"the function refused its configuration:\n{output}"
    assert any(c.startswith("GET ") and "/invocation/next" in c for c in calls), (
        f"the function never asked for an invocation: {calls}\n{output}"
    )


def test_function_refuses_to_start_when_a_failure_class_has_no_queue(template):
    # Shows that the test above can fail: without a queue for every class (and no DLQ_URL
    # fallback) the function must not start.
    env = template_env(template, {})
    del env["DLQ_URL_UNKNOWN"]
    calls, output = start(env)
    assert any("/init/error" in c for c in calls), f"started without a queue for UnknownError: {calls}\n{output}"
    assert not any("/invocation/next" in c for c in calls)
