"""Experimental design: sequential stopping, calibration, planning, simulation."""
