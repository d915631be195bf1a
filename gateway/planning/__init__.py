"""Planning: parsed, validated documents and the per-grant plan (asked, allowed, fetched)."""
