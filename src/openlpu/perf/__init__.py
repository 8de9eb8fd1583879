"""openlpu.perf"""
