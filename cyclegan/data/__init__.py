"""cyclegan.data"""
