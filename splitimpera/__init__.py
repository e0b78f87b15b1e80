"""splitimpera"""
