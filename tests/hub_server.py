"""A loopback Hugging Face Hub (127.0.0.1, a thread) for the tests of ``hf://`` handles: the
endpoints huggingface_hub 2.x calls to download a file of a model repository and to create a
repository and commit files to it, read off its source (``file_download.py``:
``hf_hub_download`` -> ``get_hf_file_metadata``, a HEAD then a GET of ``resolve``;
``hf_api.py``: ``create_repo``, ``file_exists``, ``_validate_yaml``, ``create_commit``;
``_commit_api.py``: ``_fetch_upload_modes`` (preupload), ``_send_commit``). Every file is
declared a regular (non-LFS, non-Xet) upload, so commits carry the bytes inline.

    with HubServer() as hub:                     # HF_ENDPOINT=hub.endpoint in the client
        hub.add_repo("org/name", {"config.json": b"..."})
        ...
        hub.repos["org/name"]                    # {path: bytes}, after any commits
        hub.commits                              # [(repo_id, message, [paths])]
        hub.requests                             # [(method, path)]

``KaggleServer`` (below) is the same for ``kaggle://`` handles: the Kaggle Models API calls
kagglehub makes to download one file of a model instance, on kagglesdk's fixed TEST endpoint.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Tuple
from urllib.parse import unquote, urlparse


class _Loopback:
    """A threaded HTTP server on 127.0.0.1:``port`` (0: a free one) answering with the
    subclass's ``_handler()``, serving inside ``with``."""

    def _serve(self, port: int) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with every reply sized, JSON bodies for dicts and lists, no log lines."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep test output clean
        pass

    def _reply(self, status, body=b"", headers=None, head=False):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)


class HubServer(_Loopback):
    """An in-memory model hub on 127.0.0.1 (a free port)."""

    def __init__(self):
        self.repos: Dict[str, Dict[str, bytes]] = {}
        self.commits: List[Tuple[str, str, List[str]]] = []
        self.requests: List[Tuple[str, str]] = []
        self._lock = threading.Lock()
        self._serve(0)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def add_repo(self, repo_id: str, files: Dict[str, bytes]) -> None:
        with self._lock:
            self.repos[repo_id] = dict(files)

    def commit_hash(self, repo_id: str) -> str:
        """A 40-hex revision that changes with the repository's content."""
        digest = hashlib.sha1(repo_id.encode())
        for path, data in sorted(self.repos[repo_id].items()):
            digest.update(path.encode() + hashlib.sha256(data).digest())
        return digest.hexdigest()

    def _handler(self):
        hub = self

        class Handler(_Handler):
            def _resolve(self, head):
                # /{org}/{name}/resolve/{revision}/{path}
                parts = unquote(urlparse(self.path).path).lstrip("/").split("/")
                if len(parts) < 5 or parts[2] != "resolve":
                    return self._reply(404, {"error": "not found"}, head=head)
                repo_id, path = "/".join(parts[:2]), "/".join(parts[4:])
                with hub._lock:
                    files = hub.repos.get(repo_id)
                    if files is None:
                        return self._reply(404, {"error": "Repository not found"},
                                           {"X-Error-Code": "RepoNotFound"}, head)
                    commit = hub.commit_hash(repo_id)
                    data = files.get(path)
                if data is None:
                    return self._reply(404, {"error": "Entry not found"},
                                       {"X-Error-Code": "EntryNotFound",
                                        "X-Repo-Commit": commit}, head)
                etag = '"' + hashlib.sha256(data).hexdigest() + '"'
                self._reply(200, data, {"X-Repo-Commit": commit, "ETag": etag,
                                        "Content-Type": "application/octet-stream"}, head)

            def do_HEAD(self):
                hub.requests.append(("HEAD", self.path))
                self._resolve(head=True)

            def do_GET(self):
                hub.requests.append(("GET", self.path))
                self._resolve(head=False)

            def do_POST(self):
                hub.requests.append(("POST", self.path))
                path = urlparse(self.path).path
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if path == "/api/repos/create":
                    payload = json.loads(body)
                    repo_id = "/".join(p for p in (payload.get("organization"),
                                                    payload["name"]) if p)
                    with hub._lock:
                        hub.repos.setdefault(repo_id, {})
                    return self._reply(200, {"url": f"{hub.endpoint}/{repo_id}"})
                if path == "/api/validate-yaml":
                    return self._reply(200, {})
                parts = path.split("/")  # /api/models/{org}/{name}/{action}/{revision}
                if len(parts) == 7 and parts[:3] == ["", "api", "models"]:
                    repo_id, action = f"{parts[3]}/{parts[4]}", parts[5]
                    if repo_id not in hub.repos:
                        return self._reply(404, {"error": "Repository not found"},
                                           {"X-Error-Code": "RepoNotFound"})
                    if action == "preupload":
                        files = json.loads(body)["files"]
                        return self._reply(200, {"files": [
                            {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                             "oid": None} for f in files]})
                    if action == "commit":
                        return self._commit(repo_id, body)
                self._reply(404, {"error": f"no such endpoint {path}"})

            def _commit(self, repo_id, body):
                lines = [json.loads(line) for line in body.splitlines() if line.strip()]
                header = next(line["value"] for line in lines if line["key"] == "header")
                added = {}
                for line in lines:
                    if line["key"] == "file":
                        value = line["value"]
                        added[value["path"]] = base64.b64decode(value["content"])
                    elif line["key"] != "header":
                        return self._reply(400, {"error": f"unsupported {line['key']}"})
                with hub._lock:
                    hub.repos[repo_id].update(added)
                    hub.commits.append((repo_id, header["summary"], sorted(added)))
                    commit = hub.commit_hash(repo_id)
                self._reply(200, {"commitUrl": f"{hub.endpoint}/{repo_id}/commit/{commit}",
                                  "commitOid": commit})

        return Handler


class KaggleServer(_Loopback):
    """An in-memory Kaggle Models API on 127.0.0.1:7777, the fixed endpoint of kagglesdk's
    ``KaggleEnv.TEST`` (``KAGGLE_API_ENVIRONMENT=TEST`` -> ``http://localhost:7777``,
    ``kagglesdk/kaggle_env.py``; the port cannot be chosen, so binding it may fail: OSError).

    The two calls kagglehub 1.x's ``model_download(handle, path)`` makes over HTTP, read off
    its source (``http_resolver.py``: ``_get_current_version``, ``ModelHttpResolver``;
    ``kagglesdk/kaggle_http_client.py``: every call is a JSON POST to
    ``/api/v1/{service}/{method}``): ``GetModelInstance`` (an unversioned handle's current
    version) and ``DownloadModelInstanceVersion`` with a ``path``, answered as Kaggle does
    with a redirect to the file, served with its MD5 in ``x-goog-hash`` (kagglehub checks
    it). Errors are Kaggle's JSON ``{"code": 404, "message": ...}``.

        with KaggleServer() as kaggle:            # KAGGLE_API_ENVIRONMENT=TEST in the client
            kaggle.add_instance("owner/model/keras/variation", {"config.json": b"..."})
            kaggle.add_instance("owner/model/keras/bad", files, corrupt=["model.weights.h5"])
            kaggle.requests                      # [(method, path, json body or None)]
    """

    PORT = 7777
    SERVICE = "/api/v1/models.ModelApiService/"

    def __init__(self):
        # (owner, model, framework, variation) -> {version: {path: bytes}}
        self.instances: Dict[Tuple[str, ...], Dict[int, Dict[str, bytes]]] = {}
        self.corrupt = set()
        self.requests: List[Tuple[str, str, object]] = []
        self._serve(self.PORT)

    def add_instance(self, handle: str, files: Dict[str, bytes], version: int = 1,
                     corrupt=()) -> None:
        """``handle``: owner/model/framework/variation (``keras``: kagglesdk's
        ``MODEL_FRAMEWORK_KERAS``); served as version ``version``; the files named in
        ``corrupt`` are served with an MD5 that does not match their bytes."""
        owner, model, framework, variation = handle.split("/")
        key = (owner, model, "MODEL_FRAMEWORK_" + framework.upper(), variation)
        self.instances.setdefault(key, {})[version] = dict(files)
        self.corrupt.update((key, version, name) for name in corrupt)

    def _handler(self):
        kaggle = self

        class Handler(_Handler):
            def _missing(self, what):
                self._reply(404, {"code": 404, "message": f"{what} not found"})

            def do_POST(self):
                path = urlparse(self.path).path
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = json.loads(body or b"{}")
                kaggle.requests.append(("POST", path, request))
                method = path[len(kaggle.SERVICE):] if path.startswith(kaggle.SERVICE) else ""
                key = tuple(str(request.get(k)) for k in ("ownerSlug", "modelSlug",
                                                          "framework", "instanceSlug"))
                versions = kaggle.instances.get(key, {})
                if method == "GetModelInstance":
                    if not versions:
                        return self._missing("model instance")
                    return self._reply(200, {"versionNumber": max(versions),
                                             "slug": key[3]})
                if method == "DownloadModelInstanceVersion":
                    version, name = request.get("versionNumber"), request.get("path")
                    if name not in versions.get(version, {}):
                        return self._missing(f"{'/'.join(key)}/{version}/{name}")
                    location = "/".join(("/files",) + key + (str(version), name))
                    return self._reply(302, headers={"Location": location})
                self._missing(f"endpoint {path}")

            def do_GET(self):
                path = unquote(urlparse(self.path).path)
                kaggle.requests.append(("GET", path, None))
                parts = path.split("/")  # /files/owner/model/framework/variation/version/path
                data = None
                if len(parts) > 7 and parts[1] == "files" and parts[6].isdigit():
                    files = kaggle.instances.get(tuple(parts[2:6]), {}).get(int(parts[6]), {})
                    data = files.get("/".join(parts[7:]))
                if data is None:
                    return self._missing(path)
                wrong = (tuple(parts[2:6]), int(parts[6]), "/".join(parts[7:])) in kaggle.corrupt
                digest = hashlib.md5(data + (b"x" if wrong else b""))
                md5 = base64.b64encode(digest.digest()).decode()
                self._reply(200, data, {"Content-Type": "application/octet-stream",
                                        "x-goog-hash": f"crc32c=AAAAAA==,md5={md5}"})

        return Handler
