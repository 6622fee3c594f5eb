"""karma_probe: diagnostics for semantic collapse in LLM-based personalized search."""

__version__ = "0.1.0"
