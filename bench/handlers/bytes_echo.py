"""The bench's bytes handler: a binary call's bytes, answered as bytes."""


def echo(data):
    return data
