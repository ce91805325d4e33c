"""http_echo_wsgi -- bench/http.sh's gunicorn app: the same work as http_echo.echo (JSON body in, parsed, encoded, out)."""
import json


def app(environ, start_response):
    body = json.dumps(json.loads(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))), separators=(",", ":")).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
