"""Many-chip hardware: `SystemSpec`, the node / rack / Dragonfly wiring, routes, diameter and bisection."""
