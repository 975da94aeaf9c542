# From Prefect 3's documentation, how-to-guides/workflows/write-and-run ("create a
# workflow from a method on a class"), with only the import changed
# (`prefect` -> `sdk`); each call's value is printed for the runner.
from sdk import flow


class MyClass:

    @flow
    def my_instance_method(self):
        return "Hello, from an instance method!"


    @flow
    @classmethod
    def my_class_method(cls):
        return "Hello, from a class method!"


    @flow
    @staticmethod
    def my_static_method():
        return "Hello, from a static method!"


print(MyClass().my_instance_method())
print(MyClass.my_class_method())
print(MyClass.my_static_method())
# expect: Hello, from an instance method!
# expect: Hello, from a class method!
# expect: Hello, from a static method!
