"""http_echo -- bench/http.sh's portpool handler: the JSON argument back as the result."""


def echo(args):
    return args
