"""openlpu.sim"""
