"""openlpu.viz"""
