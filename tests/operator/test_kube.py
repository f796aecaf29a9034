"""The operator's Kubernetes client authenticates: the token of the kubeconfig (the process
kubelet's pods, a developer's machine) reaches the API server as a bearer token. The Kubernetes
client 36.0.0 loaded it and never sent it; a pin that brings such a client back fails here."""

from __future__ import annotations

import http.server
import json
import threading

import pytest
import yaml

pytest.importorskip("kubernetes")

from recprep.operator.kube import new_api_client


def test_the_kubeconfig_token_is_sent(tmp_path, monkeypatch):
    seen: list[str | None] = []

    class Server(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.headers.get("Authorization"))
            body = json.dumps(
                {"kind": "NamespaceList", "apiVersion": "v1", "metadata": {}, "items": []}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "c", "cluster": {"server": f"http://127.0.0.1:{server.server_address[1]}"}}
            ],
            "users": [{"name": "u", "user": {"token": "the-pods-token"}}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "x",
        }
        path = tmp_path / "kubeconfig.yaml"
        path.write_text(yaml.safe_dump(config))
        import kubernetes

        # KUBECONFIG as a pod's process starts with it (the client reads it when imported)
        monkeypatch.setattr(kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)

        kubernetes.client.CoreV1Api(new_api_client()).list_namespace()
    finally:
        server.shutdown()
    assert seen == ["Bearer the-pods-token"]
