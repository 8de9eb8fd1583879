"""openlpu.chip"""
