"""The drifting-world simulator and what drives it: scenarios, replay, HTTP traffic, the demo world, the example model."""
