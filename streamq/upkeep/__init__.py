"""Upkeep run by every supervisor at once: promotion of due jobs and the reaper."""
