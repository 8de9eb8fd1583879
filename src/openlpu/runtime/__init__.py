"""openlpu.runtime"""
