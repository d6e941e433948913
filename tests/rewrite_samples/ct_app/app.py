from ctshop.inventory import check_stock

print(check_stock("widget", 3))
print(check_stock("gadget", 4))
