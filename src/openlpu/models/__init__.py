"""openlpu.models"""
