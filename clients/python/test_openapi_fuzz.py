"""docs/openapi.yaml against a live lead: schemathesis (from PyPI, installed by `make test`-deps)
sends generated valid and invalid requests to every route, a bounded number per route. No answer
may be a 5xx, every answer must be one the document declares, with its content type, and every
4xx must be JSON that names what is wrong (openapi_checks.py)."""

import os
import subprocess
import sys
import unittest

from test_pimesh_agent import LeadFixture
import pimesh_agent

HERE = os.path.dirname(os.path.abspath(__file__))
SPEC = os.path.join(HERE, "..", "..", "docs", "openapi.yaml")
EXAMPLES_PER_ROUTE = int(os.environ.get("PIMESH_FUZZ_EXAMPLES", "50"))


class OpenAPIFuzzTests(unittest.TestCase):
    def test_every_route_answers_as_documented_and_never_5xx(self):
        # Long polls end within 2 s (a longer wait_ms is a 400), so no example waits 30 s.
        lead = LeadFixture(config={"tasks": {"long_poll_max_ms": 2000}})
        try:
            endpoint = pimesh_agent.discover(lead.data_dir)
            token = pimesh_agent.read_token(lead.data_dir)
            # Something for the id routes to find besides random strings.
            pimesh_agent.PimeshAgent.register(lead.data_dir, "fuzz-target", capabilities=["work"])
            environment = dict(os.environ, SCHEMATHESIS_HOOKS="openapi_checks",
                               PYTHONPATH=HERE + os.pathsep + os.environ.get("PYTHONPATH", ""))
            run = subprocess.run(
                [sys.executable, "-m", "schemathesis.cli", "run", SPEC,
                 "--url", f"http://127.0.0.1:{endpoint['api']['port']}",
                 "--header", f"Authorization: Bearer {token}",
                 "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                             "response_schema_conformance,errors_are_json_that_name_the_field",
                 # Rotating the operator token mid-run would lock the fuzzer out; the route has
                 # its own tests (IsolationEndToEndTests).
                 "--exclude-path", "/v1/tokens/{kind}/rotate",
                 # These drills load the node for up to ten minutes or damage its newest snapshot
                 # by design; PlaybookEndToEndTests runs them and hits their bounds.
                 "--exclude-path", "/v1/drills/siege",
                 "--exclude-path", "/v1/drills/corrupt-snapshot",
                 "--phases", "examples,coverage,fuzzing",
                 # One worker: with two threads CPython 3.11 (Debian 12's) now and then raises a
                 # spurious "SystemError: AST constructor recursion depth mismatch" inside
                 # hypothesis (cpython#106905), a red run that says nothing about the lead.
                 "--max-examples", str(EXAMPLES_PER_ROUTE), "--workers", "1", "--seed", "1",
                 # Above the 120 s an ask or broadcast may wait for answers (timeout_ms).
                 "--request-timeout", "150", "--no-color"],
                env=environment, capture_output=True, text=True, timeout=1500)
            output = run.stdout + run.stderr
            self.assertEqual(run.returncode, 0, output[-60000:])
            # The summary (operations, test cases, warnings) goes into the make test log.
            summary = output[output.rfind("SUMMARY"):] if "SUMMARY" in output else output[-2000:]
            print("\n" + summary, file=sys.stderr)
            self.assertIsNone(lead.process.poll(), "the lead died under the fuzzer")
            self.assertEqual(lead.get("/healthz")["status"], "ok")
        finally:
            lead.stop()


if __name__ == "__main__":
    unittest.main()
