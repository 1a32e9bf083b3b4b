"""cyclegan.cli"""
