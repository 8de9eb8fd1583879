"""openlpu.system"""
