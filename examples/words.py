"""Handlers for examples/test_with_mock.c: the Python truth of `words`."""


def words(text):
    """Count the words in a string."""
    return len(text.split())
