"""cyclegan.model"""
