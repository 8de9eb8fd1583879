"""openlpu.compiler"""
