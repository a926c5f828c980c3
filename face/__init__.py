"""Face geometry: detection adapters, alignment, selection, masks, paste-back, colour transfer."""
