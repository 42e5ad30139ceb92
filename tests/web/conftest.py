"""The browser tests' fixtures (``served``, ``browser``, ``ui``): one served dataset per session."""

from _web import browser, served, ui  # noqa: F401 - fixtures, found by pytest here
