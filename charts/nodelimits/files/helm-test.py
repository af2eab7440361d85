"""`helm test nodelimits`: a pod no node can hold, sent as a server-side dry run, must be
denied by a nodelimits webhook: the apiserver -> Service -> replica -> TLS -> verdict path.

The standard library only: it runs as `python -c` in the nodelimits image, as the test's
ServiceAccount, which may create pods in NODELIMITS_TEST_NAMESPACE and nothing else. A dry
run persists nothing. Exit 0: denied by nodelimits; 1: anything else, said on stderr.
"""

import json
import os
import re
import ssl
import sys
import urllib.error
import urllib.request

ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
DENIED = re.compile(r'admission webhook "[^"]+\.nodelimits\.io" denied the request')


def api_url():
    explicit = os.environ.get("NODELIMITS_TEST_API_URL")
    if explicit:
        return explicit.rstrip("/")
    host = os.environ["KUBERNETES_SERVICE_HOST"]
    if ":" in host:
        host = f"[{host}]"
    return f"https://{host}:{os.environ['KUBERNETES_SERVICE_PORT']}"


def oversized_pod(name, annotation, group):
    """Far more cpu and memory than any node has; passes the restricted Pod Security profile."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": {annotation: group}},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "oversized",
                    "image": "nodelimits.invalid/never-pulled:dry-run",
                    "resources": {"requests": {"cpu": "100000", "memory": "1000Ti"}},
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }


def main():
    namespace = os.environ["NODELIMITS_TEST_NAMESPACE"]
    group = os.environ["NODELIMITS_TEST_GROUP"]
    pod = oversized_pod(
        os.environ.get("NODELIMITS_TEST_POD", "nodelimits-test-oversized"),
        os.environ["NODELIMITS_TEST_ANNOTATION"],
        group,
    )
    token_file = os.environ.get("NODELIMITS_TEST_TOKEN_FILE", f"{ACCOUNT}/token")
    ca_file = os.environ.get("NODELIMITS_TEST_CA_FILE", f"{ACCOUNT}/ca.crt")
    with open(token_file) as f:
        token = f.read().strip()
    url = f"{api_url()}/api/v1/namespaces/{namespace}/pods?dryRun=All&fieldManager=nodelimits-test"
    request = urllib.request.Request(
        url,
        data=json.dumps(pod).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    context = ssl.create_default_context(cafile=ca_file)
    what = f"pod {namespace}/{pod['metadata']['name']} (group {group}, 100000 cpu, 1000Ti memory)"
    try:
        with urllib.request.urlopen(request, context=context, timeout=60) as response:
            warnings = response.headers.get_all("Warning") or []
    except urllib.error.HTTPError as exc:
        body = exc.read().decode(errors="replace")
        try:
            message = json.loads(body).get("message", body)
        except ValueError:
            message = body
        if exc.code == 403 and DENIED.search(message):
            print(f"ok: the dry run of {what} was denied by nodelimits: {message}")
            return 0
        print(f"error: the dry run of {what} failed with HTTP {exc.code}, "
              f"not a nodelimits denial: {message}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"error: cannot reach the apiserver at {api_url()}: {exc}", file=sys.stderr)
        return 1
    print(f"error: the apiserver accepted the dry run of {what}: nodelimits did not deny it "
          f"(config.admission.mode not deny? namespace {namespace} excluded?); "
          f"warnings: {warnings or 'none'}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
