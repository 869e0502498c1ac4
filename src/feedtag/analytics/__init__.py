"""Analytics: geometry (zones, lines), rule kinds, presence tag segments, camera health."""
