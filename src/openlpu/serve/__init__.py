"""openlpu.serve"""
