"""``python -m services.demo``: both reference meshes end to end, then their event trees."""

from services.demo.run import demo

if __name__ == "__main__":
    demo()
