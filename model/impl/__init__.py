"""Building blocks: temporal shift (TSM), gated shift (GSM), ASFormer."""
